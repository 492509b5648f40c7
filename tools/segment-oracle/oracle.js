// Segment's own code as the judge: reads corpus.json (tools/segment-oracle/corpus.py) and prints
// what Segment's packages make of it, as JSON, for tests/segment/golden.json.
//   triggers: parseFql + validate, for every trigger on every record
//   directives: mapping-kit's transform, for every mapping on every record
//   bodies: the Metronome destination run end to end through actions-core, fetch stubbed
'use strict'
const fs = require('fs')
const path = require('path')
const { parseFql, validate } = require('@segment/destination-subscriptions')
const core = require('@segment/actions-core')
// actions-core's package exports hide its fetch module: reach it by file to stub the network.
const fetchModule = require(path.join(path.dirname(require.resolve('@segment/actions-core')),
  'fetch.js'))

const corpus = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const destinationDir = process.argv[3]

function installed(name) {
  return JSON.parse(fs.readFileSync(path.join('node_modules', name, 'package.json'), 'utf8')).version
}

function encode(value) {
  // JSON has no undefined: a missing value is {"$missing": true}.
  if (value === undefined) return { $missing: true }
  return value
}

function triggers() {
  return corpus.triggers.map((fql) => {
    let ast
    try {
      ast = parseFql(fql)
    } catch (error) {
      return { fql, parsed: false, error: String(error.message || error) }
    }
    if (ast.error) return { fql, parsed: false, error: String(ast.error.message || 'parse error') }
    const results = corpus.records.map((record) => {
      try {
        return validate(ast, record)
      } catch (error) {
        return { $error: String(error.message || error) }
      }
    })
    return { fql, parsed: true, results }
  })
}

function directives() {
  return corpus.directives.map((mapping) => {
    const results = corpus.records.map((record) => {
      try {
        return encode(core.transform(mapping, record))
      } catch (error) {
        return { $error: String(error.message || error) }
      }
    })
    return { mapping, results }
  })
}

async function bodies() {
  let sent = []
  fetchModule.default = async (request) => {
    sent.push(await request.text())
    return new fetchModule.Response('', { status: 200 })
  }
  const definition = require(path.resolve(destinationDir)).default
  const destination = new core.Destination(definition)
  const out = []
  for (const subscription of corpus.subscriptions) {
    const results = []
    for (const record of corpus.body_records) {
      sent = []
      let error = null
      try {
        await destination.onEvent(record, {
          apiToken: 'oracle-token',
          subscription: { partnerAction: 'sendEvent', subscribe: subscription.trigger,
                          mapping: subscription.settings }
        })
      } catch (caught) {
        error = String(caught.message || caught)
      }
      results.push(error !== null ? { $error: error } : sent.length ? sent[0] : null)
    }
    out.push({ subscription, results })
  }
  return out
}

bodies().then((bodyResults) => {
  const golden = {
    generated_by: 'tools/segment-oracle (see README)',
    packages: {
      '@segment/destination-subscriptions': installed('@segment/destination-subscriptions'),
      '@segment/actions-core': installed('@segment/actions-core'),
      '@segment/action-destinations': corpus.action_destinations_version
    },
    records: corpus.records,
    body_records: corpus.body_records,
    triggers: triggers(),
    directives: directives(),
    bodies: bodyResults
  }
  process.stdout.write(JSON.stringify(golden) + '\n')
})
