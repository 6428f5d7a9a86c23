// Default logging through `debug` namespaces:
//   wendelin:transaction          lifecycle (begin, commit, abort)
//   wendelin:transaction:error    errors swallowed during cleanup (abort after a failed commit, hooks)
//   wendelin:transaction:critical a failure inside tpc_finish; also emitted as a process warning,
//                                 since data managers may now disagree and someone must look.
import createDebug from 'debug'

import type { TransactionLogger } from './interfaces.js'

const debugLog = createDebug('wendelin:transaction')
const errorLog = createDebug('wendelin:transaction:error')
const criticalLog = createDebug('wendelin:transaction:critical')

function formatError(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error)
}

export const defaultLogger: TransactionLogger = {
  debug(message) {
    debugLog(message)
  },
  error(message, error) {
    errorLog('%s\n%s', message, formatError(error))
  },
  critical(message, error) {
    criticalLog('%s\n%s', message, formatError(error))
    process.emitWarning(`${message}: ${formatError(error)}`, { code: 'WENDELIN_TPC_FINISH_FAILED' })
  },
}
