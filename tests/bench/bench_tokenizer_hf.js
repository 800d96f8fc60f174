#!/usr/bin/env node
/*
 * bench_tokenizer_hf.js: the same measurement as tests/bench/bench_tokenizer.c, with Hugging Face
 * tokenizers (the npm package, Rust bound to Node), on one thread.
 *
 *   NODE_PATH=/path/to/node_modules node tests/bench/bench_tokenizer_hf.js \
 *       [-t tokenizer.json] [-n passes] [FILE]
 *
 * Rows: each string with its own `await tok.encode(s)` (every call crosses into Rust and back
 * through a promise, so this row carries the binding's overhead), cold (first pass after loading)
 * and warm (median pass); `encodeBatch` of all strings in one call (one crossing; parallelism is
 * switched off, so one thread); and all strings joined by '\n' as one `encode` (the fairest
 * comparison of the tokenizers themselves). MB/s counts UTF-8 input bytes (10^6 per MB).
 */
'use strict';
// one thread: tokenizers' encodeBatch would otherwise use a rayon thread per core
process.env.TOKENIZERS_PARALLELISM = 'false';
process.env.RAYON_NUM_THREADS = '1';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const argv = process.argv.slice(2);
let tpath = null, file = null, passes = 5;
for (let i = 0; i < argv.length; i++) {
	if (argv[i] === '-t')
		tpath = argv[++i];
	else if (argv[i] === '-n')
		passes = Math.max(1, parseInt(argv[++i], 10));
	else
		file = argv[i];
}
tpath = tpath || path.join(process.env.QVL_DATADIR || 'share', 'qwen3-vl', 'tokenizer.json');
file = file || path.join(process.env.srcdir || '.', 'tests', 'data', 'tokenizer', 'corpus.jsonl');

const raw = fs.readFileSync(file, 'utf8');
const inputs = file.endsWith('.jsonl') ? raw.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l)) :
	raw.split('\n');
if (!file.endsWith('.jsonl') && raw.endsWith('\n'))
	inputs.pop();
const bytes = inputs.reduce((a, s) => a + Buffer.byteLength(s), 0);

const now = () => Number(process.hrtime.bigint()) / 1e9;
const median = (v) => v.slice().sort((a, b) => a - b)[Math.floor(v.length / 2)];
function row(mode, b, tokens, sec) {
	console.log(mode.padEnd(22) + String(b).padStart(13) + String(tokens).padStart(11) + sec.toFixed(4).padStart(10) +
		(b / sec / 1e6).toFixed(2).padStart(10) + (tokens / sec).toFixed(0).padStart(11));
}

(async () => {
	const t0 = now();
	const tok = Tokenizer.fromFile(tpath);
	const tload = now() - t0;
	console.log(`HF tokenizers ${require('tokenizers/package.json').version}, one thread: ${file} ` +
		`(${inputs.length} strings, ${bytes} bytes); load ${tload.toFixed(3)} s`);
	console.log('mode'.padEnd(22) + 'bytes'.padStart(13) + 'tokens'.padStart(11) + 'seconds'.padStart(10) +
		'MB/s'.padStart(10) + 'tokens/s'.padStart(11));

	const times = [];
	let tokens = 0;
	for (let p = -1; p < passes; p++) {
		tokens = 0;
		const a = now();
		for (const s of inputs)
			tokens += (await tok.encode(s)).getLength();
		const sec = now() - a;
		if (p < 0)
			row('per string, cold', bytes, tokens, sec);
		else
			times.push(sec);
	}
	row('per string, warm', bytes, tokens, median(times));

	times.length = 0;
	for (let p = 0; p < passes; p++) {
		const a = now();
		const encs = await tok.encodeBatch(inputs);
		times.push(now() - a);
		tokens = encs.reduce((x, e) => x + e.getLength(), 0);
	}
	row('encodeBatch, warm', bytes, tokens, median(times));

	const all = inputs.join('\n') + '\n';
	const allBytes = Buffer.byteLength(all);
	times.length = 0;
	for (let p = 0; p < passes; p++) {
		const a = now();
		tokens = (await tok.encode(all)).getLength();
		times.push(now() - a);
	}
	row('one string, warm', allBytes, tokens, median(times));
})().catch((err) => {
	console.error(err);
	process.exit(1);
});
