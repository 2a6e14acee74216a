// Upload one file with the real tus-js-client (tus 1.0 or the IETF drafts), optionally interrupted and resumed.
// usage: node tus_upload.js <json options>
//   {endpoint, authorization, file, protocol, metadata, chunkSize, stopAfter, uploadUrl, dataDuringCreation}
// Prints one JSON line: {url, offsetAtStart, bytesSent, done, error}.
'use strict'
const fs = require('fs')
const tus = require('tus-js-client')

const opts = JSON.parse(process.argv[2])
const data = fs.readFileSync(opts.file)
let bytesSent = 0
let offsetAtStart = null
let finished = false

function report(extra) {
  if (finished) return
  finished = true
  process.stdout.write(JSON.stringify(Object.assign({ url: upload.url, offsetAtStart, bytesSent }, extra)) + '\n')
}

const upload = new tus.Upload(data, {
  endpoint: opts.endpoint,
  uploadUrl: opts.uploadUrl || null,
  protocol: opts.protocol,
  headers: { Authorization: opts.authorization },
  metadata: opts.metadata,
  chunkSize: opts.chunkSize,
  uploadDataDuringCreation: !!opts.dataDuringCreation,
  retryDelays: [100, 500, 1000],
  storeFingerprintForResuming: false,
  onChunkComplete(chunkSize, bytesAccepted) {
    if (offsetAtStart === null) offsetAtStart = bytesAccepted - chunkSize
    bytesSent += chunkSize
    if (opts.stopAfter && bytesAccepted >= opts.stopAfter && bytesAccepted < data.length) {
      upload.abort(false).then(() => report({ done: false }))
    }
  },
  onSuccess() { report({ done: true }) },
  onError(err) { report({ done: false, error: String(err) }) },
})
upload.start()
