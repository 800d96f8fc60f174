#!/usr/bin/env node
/*
 * make_tokenizer_golden.js: the expected output of qvl's tokenizer, computed by Hugging Face's own
 * tokenizers (the npm package `tokenizers`, the Rust library bound to Node).
 *
 *   NODE_PATH=/path/to/node_modules node tests/golden/make_tokenizer_golden.js \
 *       [--tokenizer share/qwen3-vl/tokenizer.json] [--data tests/data/tokenizer] [--out DIR]
 *
 * reads, from the data directory, corpus.jsonl (one JSON string per line) and corpus_bytes.jsonl
 * (one hex string per line: raw bytes, often not UTF-8) written by make_tokenizer_corpus.js, and
 * writes to DIR (default: the data directory):
 *   golden.jsonl        the ids of each corpus line (`await tok.encode(s)` → getIds()), one array
 *                       per line;
 *   golden_bytes.jsonl  the ids of each byte string, decoded first as WHATWG/Rust do it (each
 *                       maximal invalid subsequence → U+FFFD), one array per line;
 *   decode.jsonl        {"ids": […], "text": decode(ids, false), "text_skip": decode(ids, true)}
 *                       for a few hundred id sequences drawn (seeded) from the goldens: slices cut
 *                       in the middle of characters, sequences with special and added tokens,
 *                       ids that are not tokens.
 * Everything is deterministic: the same corpus and tokenizers version give the same files.
 *
 *   node tests/golden/make_tokenizer_golden.js --unicode-tables [--tokenizer PATH]
 *
 * prints the Unicode tables of inference/pretok.c, measured from tokenizers itself: the class
 * (letter, number, white space) of every code point as the Split regex (Oniguruma) sees it, and
 * the code points that tokenizers' NFC (unicode-normalization-alignments) does not know although
 * newer Unicode (this Node's ICU) gives them a combining class or a composition.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer, nfcNormalizer } = require('tokenizers');

function arg(name, def) {
	const i = process.argv.indexOf(name);
	return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const root = path.resolve(__dirname, '..', '..');
const tokPath = arg('--tokenizer', process.env.QVL_DATADIR ?
	path.join(process.env.QVL_DATADIR, 'qwen3-vl', 'tokenizer.json') :
	path.join(root, 'share', 'qwen3-vl', 'tokenizer.json'));
const dataDir = arg('--data', path.join(root, 'tests', 'data', 'tokenizer'));
const outDir = arg('--out', dataDir);

// mulberry32: a small seeded PRNG, so that the decode sequences are reproducible
function rng(seed) {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

function readLines(file) {
	return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
}

async function golden() {
	const tok = Tokenizer.fromFile(tokPath);
	const corpus = readLines(path.join(dataDir, 'corpus.jsonl'));
	const bytes = readLines(path.join(dataDir, 'corpus_bytes.jsonl'));
	fs.mkdirSync(outDir, { recursive: true });

	const ids = [];
	for (const s of corpus)
		ids.push((await tok.encode(s)).getIds());
	fs.writeFileSync(path.join(outDir, 'golden.jsonl'), ids.map((v) => JSON.stringify(v)).join('\n') + '\n');

	// Buffer#toString('utf8') is the WHATWG decoder: one U+FFFD per maximal invalid subsequence,
	// the rule Rust's String::from_utf8_lossy follows too.
	const bids = [];
	for (const h of bytes)
		bids.push((await tok.encode(Buffer.from(h, 'hex').toString('utf8'))).getIds());
	fs.writeFileSync(path.join(outDir, 'golden_bytes.jsonl'), bids.map((v) => JSON.stringify(v)).join('\n') + '\n');

	// decode sequences
	const r = rng(20240607);
	const pick = (n) => Math.floor(r() * n);
	const vocabSize = tok.getVocabSize(true);
	const seqs = [];
	const nonEmpty = ids.filter((v) => v.length > 0 && v.length < 2000);
	// whole encodings of short lines, and random slices (often cut inside a UTF-8 character)
	for (let i = 0; i < 150; i++) {
		const v = nonEmpty[pick(nonEmpty.length)];
		if (i < 50 && v.length <= 40) {
			seqs.push(v);
			continue;
		}
		const a = pick(v.length), b = Math.min(v.length, a + 1 + pick(12));
		seqs.push(v.slice(a, b));
	}
	// single ids over the whole range, byte tokens in pairs that do not form characters
	for (let i = 0; i < 60; i++)
		seqs.push([pick(vocabSize)]);
	for (let i = 0; i < 60; i++) {
		const n = 1 + pick(6), s = [];
		for (let k = 0; k < n; k++)
			s.push(pick(256));
		seqs.push(s);
	}
	// special and added tokens mixed with text, and ids that are no token (skipped)
	const added = [];
	for (let id = 151643; id < vocabSize; id++)
		added.push(id);
	for (let i = 0; i < 80; i++) {
		const v = nonEmpty[pick(nonEmpty.length)];
		const s = [];
		const n = 1 + pick(8);
		for (let k = 0; k < n; k++) {
			const c = pick(10);
			if (c < 4)
				s.push(added[pick(added.length)]);
			else if (c === 4)
				s.push(vocabSize + pick(1000));
			else
				s.push(v[pick(v.length)]);
		}
		seqs.push(s);
	}
	seqs.push([], [151643], [151667, 151668], [151644, 151644], [200000, 151645, 300000]);
	const lines = [];
	for (const s of seqs) {
		const text = await tok.decode(s, false);
		const textSkip = await tok.decode(s, true);
		lines.push(JSON.stringify({ ids: s, text: text, text_skip: textSkip }));
	}
	fs.writeFileSync(path.join(outDir, 'decode.jsonl'), lines.join('\n') + '\n');
	process.stderr.write(`wrote ${ids.length} + ${bids.length} encodings and ${seqs.length} decodings to ${outDir}\n`);
}

// ---- --unicode-tables -------------------------------------------------------------------------

function hex(cp) {
	return '0x' + cp.toString(16).padStart(4, '0');
}

// Ranges [first, last, value] over code points with a non-zero value.
function ranges(valueOf) {
	const out = [];
	for (let cp = 0; cp < 0x110000; cp++) {
		const v = valueOf(cp);
		if (!v)
			continue;
		const last = out[out.length - 1];
		if (last && last[1] === cp - 1 && last[2] === v)
			last[1] = cp;
		else
			out.push([cp, cp, v]);
	}
	return out;
}

function printRanges(name, rs, withValue) {
	console.log(`static const struct pretok_range ${name}[${rs.length}] = {`);
	for (let i = 0; i < rs.length; i += 4) {
		const row = rs.slice(i, i + 4).map((x) => `{${hex(x[0])}, ${hex(x[1])}, ${withValue ? x[2] : 0}}`);
		console.log('\t' + row.join(', ') + ',');
	}
	console.log('};');
}

function unicodeTables() {
	const tok = Tokenizer.fromFile(tokPath);
	const pt = tok.getPreTokenizer();
	const pieces = (s) => pt.preTokenizeString(s).length;
	// The class of X as the Split regex sees it, from how "aXa" and "1X!" split:
	//   letter: "aXa" is one piece; number: "a","X","a"; white space: "a","Xa" and "1","X","!";
	//   other: "a","Xa" and "1","X!".
	const LETTER = 1, NUMBER = 2, SPACE = 3;
	const cls = new Uint8Array(0x110000);
	for (let cp = 0; cp < 0x110000; cp++) {
		if (cp >= 0xd800 && cp < 0xe000)
			continue;
		const X = String.fromCodePoint(cp);
		if (cp === 0x0a || cp === 0x0d || cp === 0x20) {
			cls[cp] = SPACE;   // special in the regex itself; white space for \s
			continue;
		}
		const a = pieces('a' + X + 'a');
		if (a === 1)
			cls[cp] = LETTER;
		else if (a === 3)
			cls[cp] = NUMBER;
		else if (pieces('1' + X + '!') === 3)
			cls[cp] = SPACE;
	}
	// Code points tokenizers' NFC does not know: compare it with ICU's NFC on probes that show a
	// combining class (after x and before U+0334 ccc 1; after U+0345 ccc 240), composition
	// (the canonical decomposition) and reordering against U+0301.
	const nfc = nfcNormalizer();
	const probes = [];
	for (let cp = 0; cp < 0x110000; cp++) {
		if ((cp >= 0xd800 && cp < 0xe000) || cp === 0x0a)
			continue;
		const X = String.fromCodePoint(cp);
		probes.push(X, 'x' + X + '\u0334', 'x\u0345' + X, X + '\u0301');
		const d = X.normalize('NFD');
		if (d !== X)
			probes.push(d, X);
	}
	const barrier = new Uint8Array(0x110000);
	for (let i = 0; i < probes.length; i += 4000) {
		const chunk = probes.slice(i, i + 4000);
		const got = nfc.normalizeString(chunk.join('\n')).split('\n');
		for (let j = 0; j < chunk.length; j++) {
			if (got[j] === chunk[j].normalize('NFC'))
				continue;
			// every code point of the probe but the probe's own scaffolding and the old
			// combining diacritics (Unicode 1.1, known to every normalizer), and the
			// composed character the probe's decomposition came from
			for (const c of chunk[j] + chunk[j].normalize('NFC')) {
				const cp = c.codePointAt(0);
				if (cp !== 0x78 && !(cp >= 0x300 && cp <= 0x36f))
					barrier[cp] = 1;
			}
		}
	}
	const classRanges = ranges((cp) => cls[cp]);
	const barrierRanges = ranges((cp) => barrier[cp]);
	console.log(`/* BEGIN GENERATED by tests/golden/make_tokenizer_golden.js --unicode-tables from tokenizers`);
	console.log(` * ${require('tokenizers/package.json').version} (Node ${process.version}, ICU Unicode ${process.versions.unicode}). */`);
	printRanges('pretok_class_ranges', classRanges, true);
	printRanges('pretok_nfc_barriers', barrierRanges, false);
	console.log('/* END GENERATED */');
}

if (process.argv.includes('--unicode-tables'))
	unicodeTables();
else
	golden().catch((err) => {
		console.error(err);
		process.exit(1);
	});
