// The client's choice between spinning and sleeping while it waits for a reply, fed with reply
// times (no clock): it does what has lately been faster, tries the other one wait in eight (one in
// 32 when the other has lately been over 1.5 times slower), and never spins when replies take
// longer than a spin may last.
import { expect } from 'chai'
import { SpinPolicy } from '@wendelin/zeo'

/** Run `waits` waits whose replies take `spinning` µs when spun for and `sleeping` µs when slept for; how many spun. */
function run(policy: SpinPolicy, waits: number, spinning: number, sleeping: number): number {
  let spun = 0
  for (let i = 0; i < waits; i++) {
    const window = policy.next()
    if (window > 0) spun++
    policy.observe(window > 0, window > 0 ? spinning : sleeping)
  }
  return spun
}

describe('zeo SpinPolicy', () => {
  it('spins when spinning brings replies sooner, and tries sleeping one wait in eight', () => {
    const policy = new SpinPolicy()
    run(policy, 400, 40, 55)
    expect(run(policy, 800, 40, 55)).to.equal(700)
    expect(policy.prefersSpinning).to.equal(true)
    const window = policy.next()
    expect(window).to.be.greaterThan(40).and.at.most(250)
  })

  it('tries sleeping only one wait in 32 when it has lately been much slower', () => {
    const policy = new SpinPolicy()
    run(policy, 400, 40, 120)
    expect(run(policy, 800, 40, 120)).to.equal(775)
  })

  it('sleeps at once when sleeping brings replies sooner (busy vCPUs), and tries spinning one wait in eight', () => {
    const policy = new SpinPolicy()
    run(policy, 400, 70, 55)
    expect(run(policy, 800, 70, 55)).to.equal(100)
    expect(policy.prefersSpinning).to.equal(false)
    run(policy, 400, 95, 55)
    expect(run(policy, 800, 95, 55)).to.equal(25)
  })

  it('follows a change: from spinning to sleeping and back', () => {
    const policy = new SpinPolicy()
    run(policy, 800, 40, 120)
    run(policy, 800, 120, 40)
    expect(run(policy, 800, 120, 40)).to.equal(25)
    run(policy, 800, 40, 120)
    expect(run(policy, 800, 40, 120)).to.equal(775)
  })

  it('never spins when replies take longer than the longest spin, and does again when they are quick', () => {
    const policy = new SpinPolicy()
    run(policy, 400, 600, 500)
    expect(run(policy, 800, 600, 500)).to.equal(0)
    // sleeping replies become quick: the spin is tried again, and kept when it is quicker still
    run(policy, 800, 30, 80)
    expect(run(policy, 800, 30, 80)).to.equal(775)
  })
})
