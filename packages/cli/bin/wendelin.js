#!/usr/bin/env node
// The `wendelin` command (its code is compiled TypeScript in ../dist).
import '../dist/cli.js'
