#!/usr/bin/env node
/*
 * make_tokenizer_corpus.js: the test inputs of qvl's tokenizer, generated deterministically
 * (seeded), no dependencies.
 *
 *   node tests/golden/make_tokenizer_corpus.js [--out tests/data/tokenizer]
 *
 * writes
 *   corpus.jsonl        one JSON string per line (valid Unicode: no lone surrogates — JSON cannot
 *                       carry invalid UTF-8 and Node would replace them before tokenizers sees them);
 *   corpus_bytes.jsonl  one hex string per line: byte strings that are mostly not valid UTF-8
 *                       (stray continuation bytes, truncated sequences, overlongs, CESU-8 lone
 *                       surrogates, bytes F5–FF, NULs), encoded after U+FFFD replacement.
 * What the corpus covers: many scripts (Latin with diacritics in NFC and NFD, Vietnamese,
 * Cyrillic, Greek, Arabic, Hebrew, Devanagari, Bengali, Tamil, Thai, CJK, Hangul in syllables and
 * jamo, Japanese kana with combining marks), emoji with ZWJ sequences, skin tones, flags and
 * keycaps, code in several languages, every kind of white space in runs (U+0085, U+00A0, U+180E,
 * U+200B, U+2028, U+3000, \r\n…), control characters and NUL, numbers in several scripts,
 * contractions in mixed case and look-alikes (’s, 'ſ, 'K with U+212A), added tokens and
 * look-alikes, characters whose NFC or regex class changed in recent Unicode versions, random
 * code points from every plane, long inputs (20–100 KB) and the empty string.
 * Then make_tokenizer_golden.js computes the expected ids with Hugging Face tokenizers.
 */
'use strict';
const fs = require('fs');
const path = require('path');

const outDir = (() => {
	const i = process.argv.indexOf('--out');
	return i >= 0 ? process.argv[i + 1] : path.resolve(__dirname, '..', 'data', 'tokenizer');
})();

// mulberry32
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
const r = rng(0x51f3c0de);
const pick = (a) => a[Math.floor(r() * a.length)];
const int = (n) => Math.floor(r() * n);
const cp = (...c) => String.fromCodePoint(...c);

// ---- building blocks ---------------------------------------------------------------------------

const prose = {
	en: ['The quick brown fox jumps over the lazy dog.', "I'm sure you're right, but we'll see what they've done.",
		"DON'T SHOUT! IT'S LOUD.", "He'd've known; she'D said it's O'Brien's.", 'Hello, world!',
		'Tokenization is the first step of every language model.', 'e.g. i.e. etc. U.S.A. Mr. Smith'],
	fr: ['Ça a été une journée très chargée, où l’on a mangé des crêpes.', 'Œuvre, cœur, naïve, Noël, façade.'],
	de: ['Größe, Übermaß und Straße — schön!', 'Fußgängerübergänge'],
	vi: ['Tiếng Việt có dấu: Đây là một câu thử nghiệm.', 'Người ta nói rằng ngôn ngữ rất khó.'],
	pl: ['Zażółć gęślą jaźń.', 'Łódź, Kraków, Gdańsk'],
	tr: ['İstanbul’da ılık bir gün. IĞDIR ığdır'],
	ru: ['Съешь же ещё этих мягких французских булок, да выпей чаю.', 'Привет, мир! Ёжик в тумане.'],
	uk: ['Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!'],
	el: ['Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.', 'Καλημέρα κόσμε· ΐ ΰ ά'],
	ar: ['مرحبا بالعالم', 'اَلسَّلَامُ عَلَيْكُمْ', 'العربية ١٢٣ ٤٥٦'],
	he: ['שלום עולם', 'בְּרֵאשִׁית בָּרָא אֱלֹהִים'],
	fa: ['سلام دنیا ۱۲۳'],
	hi: ['नमस्ते दुनिया', 'हिन्दी में परीक्षण क्षत्रिय ०१२३'],
	bn: ['আমি বাংলায় গান গাই', 'কোৗ'],
	ta: ['வணக்கம் உலகம் கொ'],
	th: ['สวัสดีชาวโลก', 'ภาษาไทยไม่มีช่องว่างระหว่างคำ'],
	zh: ['你好，世界！', '我们今天学习中文分词和标记化。', '繁體中文測試：龍與鳳。'],
	ja: ['こんにちは世界', 'カタカナとひらがな、漢字の混在。', 'ｶﾀｶﾅ ﾊﾞﾝｻﾞｲ', 'か\u3099き\u3099'],
	ko: ['안녕하세요 세계', '한국어 토큰화 테스트입니다.', '\u1112\u1161\u11ab\u1100\u1173\u11af'],
	misc: ['ሰላም ልዑል', 'Բարեւ աշխարհ', 'გამარჯობა მსოფლიო', 'ᠮᠣᠩᠭᠣᠯ\u180eᠤ', 'ꦲꦏ꧀ꦱꦫ'],
};
const allProse = Object.values(prose).flat();

const emoji = ['😀', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇩🇪', '🇯🇵🇺🇸', '1️⃣', '#️⃣', '❤️', '🧑🏿‍🚀', '👩🏻‍❤️‍💋‍👨🏼', '🫠', '☺︎',
	'🏴󠁧󠁢󠁳󠁣󠁴󠁿', '🐈‍⬛', '✌🏾', '🤷‍♀️', '💯🔥'];

const code = [
	'int main(void) {\n\treturn 0;\n}\n',
	'#include <stdio.h>\nint main(int argc, char **argv) { printf("%d\\n", argc); }',
	'def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n',
	'const x = [1, 2, 3].map((v) => v * 2); // doubled\nconsole.log(`x=${x}`);',
	'fn main() {\n    let v: Vec<u8> = vec![0xff; 16];\n    println!("{:?}", v);\n}\n',
	'SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;',
	'<html><body><p class="x">Hi &amp; bye</p></body></html>',
	'{"key": "value", "n": 3.14, "list": [true, false, null]}',
	'for f in *.txt; do echo "$f" | tr a-z A-Z >> out.log; done',
	'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hi")\n}\n',
	'    if (a != b && c <= d || !e) { x += 1; y -= 2; z *= 3; }',
	'\r\n\r\n$ make -j4 && ./a.out\r\n',
	'x = {k: v for k, v in d.items() if v is not None}  # comment',
	'public static void Main(string[] args) => Console.WriteLine("C#");',
	'a:=b;c==d;e!==f;g===h;i<<=2;j>>>=3;k**=4;l//=5',
];

const spaces = [' ', '  ', '   ', '\t', '\t\t', '\n', '\n\n', '\r\n', '\r', '\r\n\r\n', ' \n', '\n ', ' \t\n ',
	'\u00a0', '\u3000', '\u2028', '\u2029', '\u180e', '\u200b', '\u0085', '\u000b', '\u000c', '\u1680',
	'\u2000', '\u2003', '\u200a', '\u202f', '\u205f', '\ufeff', '\u00a0\u00a0', ' \u3000 ', '\u2028\n'];

const added = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|object_ref_start|>', '<|object_ref_end|>',
	'<|box_start|>', '<|box_end|>', '<|quad_start|>', '<|quad_end|>', '<|vision_start|>', '<|vision_end|>',
	'<|vision_pad|>', '<|image_pad|>', '<|video_pad|>', '<tool_call>', '</tool_call>', '<|fim_prefix|>',
	'<|fim_middle|>', '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>', '<|file_sep|>', '<tool_response>',
	'</tool_response>', '<think>', '</think>'];
const lookalikes = ['<|im_start', '|im_start|>', '<|im_start|', '<|IM_START|>', '< |im_start|>', '<|im_sta rt|>',
	'<<|im_end|>>', '<|im_end|><', '<think', 'think>', '</think', '<thinking>', '<tool_call', '<|endoftext',
	'<|endoftext|', '<|', '|>', '<', '>', '<>', '<||>', '<|im_start|\u0338', '<|im_start|>\u0338', '<think>\u0301'];

const numbers = ['0', '7', '42', '3.14159', '-273.15', '1,000,000', '1e-9', '0xDEADBEEF', '2024-06-07',
	'١٢٣', '०१२', '๑๒๓', '½', '¾', 'Ⅻ', 'ⅻ', '①②', '²³', '𝟘𝟙𝟚', '𐄇', '〇一二', '12345678901234567890'];

const contractions = ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'rE", "'ve", "'VE", "'m", "'M", "'ll",
	"'LL", "'Ll", "'d", "'D", "’s", "’S", "'ſ", "'ſt", "'K", "'\u212a", "'k", "'ﬅ", "'ß", "'x", "''s", "'",
	"it's", "IT'S", "we'LL", "they'Ve", "she'D", "I'M", "don't", "DON'T", "y'all", "o'clock", "rock'n'roll",
	"'sup", "'tis", "'Twas", "1's", " 's", "\n's", "'s'"];

const controls = ['\u0000', '\u0001', '\u0007', '\u0008', '\u001b', '\u001f', '\u007f', '\u0080', '\u009f',
	'\u0000\u0000', 'a\u0000b', '\u200c', '\u200d', '\u200e', '\u202e', '\u2066', '\ufffd', '\uffff', '\ufffe',
	cp(0xe000), cp(0xf8ff), cp(0x10ffff), cp(0xe0001), cp(0xe0041), cp(0xe0100)];

// NFC: decomposed and out-of-order marks, singletons, exclusions, Hangul jamo, marks unknown to
// tokenizers' normalizer (Unicode 9.0), and compositions new since then
const nfcCases = ['e\u0301', 'E\u0301\u0300', 'a\u0323\u0302', 'a\u0302\u0323', 'o\u0308\u0304', '\u212b', '\u2126',
	'\u212a', '\u0958', '\u2adc', '\u1e9b\u0323', '\u0344', '\u0340', '\u1100\u1161\u11a8', '\u1100\u1161',
	'\uac00\u11a8', 'ᄀ\u1161\u11a8\u1100', 'x\u0345\u0334', 'q\u0307\u0323', '\u0d4a', '\u0d46\u0d3e',
	'\u0b47\u0b3e', '\u09c7\u09be', '\u1025\u102e', 'x\u07fd\u0334', 'x\u1df6\u0301', '\u1df6\u0301',
	'x\u0334\u1ac0', cp(0x11935, 0x11930), cp(0x11938), cp(0x105d2, 0x307), cp(0x1611e, 0x1611e),
	cp(0x16d63, 0x16d67), 'a' + cp(0x1e4ec) + '\u0301', '\u0915\u093c', '\u0929', '\u05e9\u05c1\u05bc',
	'\u0627\u0653', '\u0622', 'A\u030a\u0327', '\u00c5\u0327'];

// regex classes: U+180E is "other" for Oniguruma but \s for PCRE2; letters and digits new in
// Unicode 15/16; marks (not letters); letter-like symbols
const classCases = ['a\u180eb', '\u180e\u180e', ' \u180e', 'x' + cp(0x1c89) + 'y', cp(0x105c0, 0x105c1),
	cp(0x11f04, 0x11f05), cp(0x31350), cp(0x2ebf0), cp(0x1e4d0, 0x1e4f0), cp(0x16d40, 0x16d41),
	'a\u0301b', '\u0301a', '\u20dd', '℃', 'ℕ', 'ª', 'º', 'ʰ', '々', 'ー', '〆', '\u3007', 'Ⓐ', '🅰'];

function words(n) {
	let s = '';
	for (let i = 0; i < n; i++)
		s += pick(allProse) + pick([' ', ' ', ' ', '\n', '  ', '\t']);
	return s;
}

// random code point, weighted towards interesting ranges
const ranges = [[0x20, 0x7e], [0x00, 0x1f], [0x80, 0x2ff], [0x300, 0x36f], [0x370, 0x52f], [0x590, 0x6ff],
	[0x900, 0xdff], [0xe00, 0xeff], [0x1000, 0x1fff], [0x2000, 0x2bff], [0x3000, 0x30ff], [0x3400, 0x4dbf],
	[0x4e00, 0x9fff], [0xa000, 0xabff], [0xac00, 0xd7a3], [0xf900, 0xfffd], [0x10000, 0x1ffff],
	[0x1f300, 0x1faff], [0x20000, 0x3134f], [0xe0000, 0xe01ef], [0xf0000, 0x10ffff], [0x1100, 0x11ff]];
function randomCp() {
	const [a, b] = pick(ranges);
	return cp(a + int(b - a + 1));
}

// ---- the corpus --------------------------------------------------------------------------------

const corpus = [];
const add = (s) => corpus.push(s);

add('');
for (const l of [...allProse, ...emoji, ...code, ...spaces, ...added, ...lookalikes, ...numbers, ...contractions,
	...controls, ...nfcCases, ...classCases])
	add(l);
// NFD forms of the prose
for (const l of allProse)
	if (l.normalize('NFD') !== l)
		add(l.normalize('NFD'));
// every printable ASCII character alone and in pairs with a space
for (let c = 0; c < 128; c++)
	add(cp(c));
for (let c = 0x21; c < 0x7f; c++)
	add(' ' + cp(c) + cp(c) + ' x');
// white space before letters, punctuation, digits, newlines and the end
for (const sp of spaces)
	for (const next of ['word', '!?', '7', '\n', '', '\u00e9t\u00e9', '\u4f60\u597d', sp])
		add('a' + sp + next);
// contractions in context
for (const c of contractions)
	add('word' + c + ' next' + c + 'x');
// added tokens inside words, doubled, next to their look-alikes and white space
for (const t of added) {
	add('x' + t + 'y');
	add(t + t);
	add(' ' + t + ' ');
	add('\n' + t + '\n');
	add(pick(lookalikes) + t + pick(lookalikes));
}
add('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|>' +
	'<|image_pad|><|vision_end|>Describe.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n');
add('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>');
// random mixtures of everything
const atoms = [...allProse, ...emoji, ...code, ...spaces, ...spaces, ...added, ...lookalikes, ...numbers,
	...contractions, ...controls, ...nfcCases, ...classCases];
for (let i = 0; i < 1300; i++) {
	const n = 1 + int(8);
	let s = '';
	for (let k = 0; k < n; k++) {
		let a = pick(atoms);
		if (a.length > 12 && r() < 0.5) {
			// a fragment of it, on code point boundaries
			const cps = [...a];
			const st = int(cps.length);
			a = cps.slice(st, st + 1 + int(10)).join('');
		}
		s += a;
	}
	add(s);
}
// random code points
for (let i = 0; i < 400; i++) {
	let s = '';
	const n = 1 + int(12);
	for (let k = 0; k < n; k++)
		s += r() < 0.15 ? pick(spaces) : randomCp();
	add(s);
}
// runs of one character class
for (const c of ['a', 'é', 'я', '中', '한', '1', '!', ' ', '\n', '\t', '\u3000', '😀', '\u0301', '\u0000'])
	for (const n of [2, 3, 7, 16, 33, 100])
		add(c.repeat(n));
// long inputs: prose with code and everything (~20 KB), code (~30 KB), and long runs (~100 KB
// in few tokens: a single long word, long white space and punctuation runs)
add(words(520));
{
	let s = '';
	while (s.length < 30000)
		s += pick(code) + '\n';
	add(s);
}
add('a'.repeat(30000) + ' '.repeat(30000) + '='.repeat(20000) + '\n'.repeat(5000) + 'z'.repeat(15000));

// ---- byte strings --------------------------------------------------------------------------------

const bytes = [];
const hex = (b) => Buffer.from(b).toString('hex');
const fixed = [
	[0x80], [0xbf], [0xc0, 0x80], [0xc1, 0xbf], [0xc2], [0xc2, 0x41], [0xe0, 0x80, 0x80], [0xe0, 0xa0],
	[0xe2, 0x82], [0xe2, 0x82, 0x41], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80],
	[0xf0, 0x80, 0x80, 0x80], [0xf0, 0x9f, 0x98], [0xf0, 0x9f, 0x98, 0x41], [0xf4, 0x90, 0x80, 0x80],
	[0xf5, 0x80, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfe], [0xff], [0xff, 0xfe], [0x00],
	[0x41, 0x00, 0x42], [0x3c, 0x7c, 0xff, 0x7c, 0x3e], [0xc3, 0x28], [0xa0, 0xa1], [0xe1, 0x80, 0xe1, 0x80, 0x80],
];
for (const b of fixed)
	bytes.push(hex(b));
const validSamples = [...allProse, ...emoji, ...added, ...contractions].map((s) => Buffer.from(s, 'utf8'));
for (let i = 0; i < 200; i++) {
	const parts = [];
	const n = 1 + int(6);
	for (let k = 0; k < n; k++) {
		const c = int(4);
		if (c === 0)
			parts.push(Buffer.from(pick(fixed)));
		else if (c === 1) {
			const v = pick(validSamples);
			const a = int(v.length);
			parts.push(v.subarray(a, a + 1 + int(12)));   // cut anywhere, often inside a character
		} else if (c === 2) {
			const m = 1 + int(5);
			const b = Buffer.alloc(m);
			for (let j = 0; j < m; j++)
				b[j] = int(256);
			parts.push(b);
		} else {
			parts.push(pick(validSamples));
		}
	}
	bytes.push(hex(Buffer.concat(parts)));
}

fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'corpus.jsonl'), corpus.map((s) => JSON.stringify(s)).join('\n') + '\n');
fs.writeFileSync(path.join(outDir, 'corpus_bytes.jsonl'), bytes.map((s) => JSON.stringify(s)).join('\n') + '\n');
process.stderr.write(`${corpus.length} strings, ${bytes.length} byte strings in ${outDir}\n`);
