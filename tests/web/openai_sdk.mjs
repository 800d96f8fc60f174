// openai_sdk.mjs: the official OpenAI Node SDK (npm package openai, 6.x) against a running qvl
// web stack, as a client application would use it. Run by tests/web/common.sh:
//
//   node tests/web/openai_sdk.mjs BASE_URL API_KEY MODEL      (BASE_URL ends in /v1)
//
// Checks models.list, a chat completion (content, usage, finish_reason), a streamed one (chunks
// through the SDK's SSE parser up to [DONE], several with content, one with finish_reason), and
// that a wrong key and an unknown model surface as the SDK's AuthenticationError (401) and
// NotFoundError (404). Prints one line per check; exits 1 on the first mismatch.
//
// The package is loaded with require() so that NODE_PATH applies (ES module imports ignore it):
// CI installs npm packages into a directory of its own and points NODE_PATH there.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const mod = require('openai');
const OpenAI = mod.OpenAI ?? mod.default ?? mod;
let version = '';
try {
	version = ' ' + require('openai/version').VERSION;
} catch {
	// older layouts: the version is informational only
}

const [baseURL, apiKey, model] = process.argv.slice(2);
if (!baseURL || !apiKey || !model) {
	console.error('usage: node openai_sdk.mjs BASE_URL API_KEY MODEL');
	process.exit(2);
}

function check(cond, what, detail) {
	if (!cond) {
		console.log(`FAIL: ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail).slice(0, 800)}`);
		process.exit(1);
	}
	console.log(`ok: ${what}`);
}

// no retries: a failure must show, not be papered over
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
const messages = [{ role: 'user', content: 'Say something.' }];

const models = await client.models.list();
const ids = models.data.map((m) => m.id);
check(ids.includes(model), `models.list includes ${model}`, ids);

const c = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
check(c.object === 'chat.completion', 'chat.completion object', c);
check(typeof c.choices?.[0]?.message?.content === 'string', 'choices[0].message.content is a string', c);
check(['stop', 'length'].includes(c.choices[0].finish_reason), 'finish_reason stop or length', c);
check(c.usage?.prompt_tokens > 0 && c.usage?.completion_tokens > 0 &&
	c.usage.total_tokens === c.usage.prompt_tokens + c.usage.completion_tokens, 'usage', c.usage);

const stream = await client.chat.completions.create({
	model, messages, max_tokens: 16, temperature: 0, stream: true,
	// vLLM's extension (passed through as is): generate all 16 tokens
	ignore_eos: true,
});
let chunks = 0, withContent = 0, finish = null, text = '', notChunk = null;
for await (const chunk of stream) {
	chunks++;
	if (chunk.object !== 'chat.completion.chunk') notChunk ??= chunk;
	const ch = chunk.choices?.[0];
	if (ch?.delta?.content) {
		withContent++;
		text += ch.delta.content;
	}
	if (ch?.finish_reason) finish = ch.finish_reason;
}
check(notChunk === null, 'stream: every event a chat.completion.chunk', notChunk);
check(withContent >= 2, `stream: ${chunks} chunks, ${withContent} with content`, { chunks, withContent, text });
check(finish === 'length', 'stream: finish_reason length (max_tokens with ignore_eos)', finish);

async function expectError(what, status, cls, fn) {
	try {
		await fn();
	} catch (e) {
		check(e instanceof cls && e.status === status, `${what}: ${cls.name} (${status})`,
			{ name: e?.constructor?.name, status: e?.status, message: e?.message });
		return;
	}
	check(false, `${what}: no error raised`);
}
const wrong = new OpenAI({ baseURL, apiKey: 'sk-wrong', maxRetries: 0, timeout: 60_000 });
await expectError('wrong API key', 401, OpenAI.AuthenticationError,
	() => wrong.chat.completions.create({ model, messages, max_tokens: 2 }));
await expectError('unknown model', 404, OpenAI.NotFoundError,
	() => client.chat.completions.create({ model: 'no-such-model', messages, max_tokens: 2 }));

console.log(`OpenAI SDK${version}: all checks passed`);
