// Dumps the cctv-age test vectors (npm package cctv-age, pinned in
// package.json; `npm ci` installs it) into a directory, one file per
// vector named after it, for tests/unit/test_age.c.
//
//   node tests/unit/age_vectors.js OUTDIR
'use strict';
const fs = require('fs');
const path = require('path');

const out = process.argv[2];
if (!out) {
	console.error('usage: node age_vectors.js OUTDIR');
	process.exit(2);
}
let vectors;
try {
	vectors = require('cctv-age');
} catch (e) {
	console.error(`cannot load the cctv-age vectors (run npm ci): ${e.message}`);
	process.exit(1);
}
fs.mkdirSync(out, { recursive: true });
let n = 0;
for (const [name, bytes] of Object.entries(vectors)) {
	if (!(bytes instanceof Uint8Array) || !/^[A-Za-z0-9_.-]+$/.test(name))
		continue;
	fs.writeFileSync(path.join(out, name), bytes);
	n++;
}
if (n === 0) {
	console.error('no cctv-age vectors found');
	process.exit(1);
}
console.log(`${n} vectors written to ${out}`);
