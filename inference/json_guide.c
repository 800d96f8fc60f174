/*
 * json_guide: the JSON recognizer of guided decoding (see json_guide.h).
 *
 * A pushdown automaton over bytes. Numbers have no closing byte of their own: a byte that
 * cannot continue a number ends it when the number is complete (after a digit), and is then
 * taken as the byte after the value. The closing sequence is found by stepping the automaton
 * with a canonical byte for each state (the shortest way out of it) until the object is done.
 */
#include "json_guide.h"

#include <string.h>

enum {
	S_START,         /* before the top-level object */
	S_OBJ_FIRST,     /* after '{': a key or '}' */
	S_OBJ_KEY,       /* after ',' in an object: a key */
	S_COLON,         /* after a key */
	S_VALUE,         /* a value */
	S_ARR_FIRST,     /* after '[': a value or ']' */
	S_AFTER,         /* after a value: ',' or the container's closer */
	S_STR,           /* in a string */
	S_STR_ESC,       /* after '\' */
	S_STR_HEX,       /* in \uXXXX: aux hex digits left */
	S_NUM_MINUS,     /* '-': a digit must follow */
	S_NUM_ZERO,      /* a leading 0 (complete) */
	S_NUM_INT,       /* integer digits (complete) */
	S_NUM_DOT,       /* '.': a digit must follow */
	S_NUM_FRAC,      /* fraction digits (complete) */
	S_NUM_E,         /* 'e': a sign or digit */
	S_NUM_ESIGN,     /* exponent sign: a digit */
	S_NUM_EXP,       /* exponent digits (complete) */
	S_LIT,           /* true / false / null: aux letters matched */
	S_DONE,          /* the object is complete */
};

static const char *literal(uint8_t lit)
{
	return lit == 't' ? "true" : lit == 'f' ? "false" : "null";
}

static bool is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(uint8_t c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

void json_guide_init(json_guide *g)
{
	memset(g, 0, sizeof(*g));
	g->state = S_START;
}

bool json_guide_done(const json_guide *g)
{
	return g->state == S_DONE;
}

static void value_done(json_guide *g)
{
	g->state = g->depth ? S_AFTER : S_DONE;
}

/* Begin a value with c (not whitespace). */
static bool begin_value(json_guide *g, uint8_t c)
{
	switch (c) {
	case '{':
	case '[':
		if (g->depth == JSON_GUIDE_MAX_DEPTH)
			return false;
		g->stack[g->depth++] = c;
		g->state = c == '{' ? S_OBJ_FIRST : S_ARR_FIRST;
		return true;
	case '"':
		g->state = S_STR;
		g->key = false;
		g->aux = 0;
		return true;
	case '-':
		g->state = S_NUM_MINUS;
		return true;
	case '0':
		g->state = S_NUM_ZERO;
		return true;
	case 't':
	case 'f':
	case 'n':
		g->state = S_LIT;
		g->lit = c;
		g->aux = 1;
		return true;
	default:
		if (c >= '1' && c <= '9') {
			g->state = S_NUM_INT;
			return true;
		}
		return false;
	}
}

/* The byte after a complete value inside a container. */
static bool after_value(json_guide *g, uint8_t c)
{
	if (is_ws(c))
		return true;
	uint8_t top = g->stack[g->depth - 1];
	if (c == ',') {
		g->state = top == '{' ? S_OBJ_KEY : S_VALUE;
		return true;
	}
	if ((c == '}' && top == '{') || (c == ']' && top == '[')) {
		g->depth--;
		value_done(g);
		return true;
	}
	return false;
}

/* A complete number meets c, which does not continue it: the number ends there. */
static bool end_number(json_guide *g, uint8_t c)
{
	json_guide t = *g;
	value_done(&t);
	if (t.state != S_AFTER || !after_value(&t, c))
		return false;
	*g = t;
	return true;
}

static bool step(json_guide *g, uint8_t c)
{
	switch (g->state) {
	case S_START:
		if (is_ws(c))
			return true;
		return c == '{' && begin_value(g, c);
	case S_OBJ_FIRST:
	case S_OBJ_KEY:
		if (is_ws(c))
			return true;
		if (c == '"') {
			g->state = S_STR;
			g->key = true;
			g->aux = 0;
			return true;
		}
		if (c == '}' && g->state == S_OBJ_FIRST) {
			g->depth--;
			value_done(g);
			return true;
		}
		return false;
	case S_COLON:
		if (is_ws(c))
			return true;
		if (c != ':')
			return false;
		g->state = S_VALUE;
		return true;
	case S_VALUE:
	case S_ARR_FIRST:
		if (is_ws(c))
			return true;
		if (c == ']' && g->state == S_ARR_FIRST) {
			g->depth--;
			value_done(g);
			return true;
		}
		return begin_value(g, c);
	case S_AFTER:
		return after_value(g, c);
	case S_STR:
		if (c == '"') {
			if (g->key)
				g->state = S_COLON;
			else
				value_done(g);
			return true;
		}
		if (c == '\\') {
			g->state = S_STR_ESC;
			return true;
		}
		return c >= 0x20;
	case S_STR_ESC:
		if (c == 'u') {
			g->state = S_STR_HEX;
			g->aux = 4;
			return true;
		}
		if (!strchr("\"\\/bfnrt", c) || !c)
			return false;
		g->state = S_STR;
		return true;
	case S_STR_HEX:
		if (!is_hex(c))
			return false;
		if (--g->aux == 0)
			g->state = S_STR;
		return true;
	case S_NUM_MINUS:
		if (c == '0')
			g->state = S_NUM_ZERO;
		else if (is_digit(c))
			g->state = S_NUM_INT;
		else
			return false;
		return true;
	case S_NUM_ZERO:
	case S_NUM_INT:
		if (is_digit(c) && g->state == S_NUM_INT)
			return true;
		if (c == '.') {
			g->state = S_NUM_DOT;
			return true;
		}
		if (c == 'e' || c == 'E') {
			g->state = S_NUM_E;
			return true;
		}
		return end_number(g, c);
	case S_NUM_DOT:
		if (!is_digit(c))
			return false;
		g->state = S_NUM_FRAC;
		return true;
	case S_NUM_FRAC:
		if (is_digit(c))
			return true;
		if (c == 'e' || c == 'E') {
			g->state = S_NUM_E;
			return true;
		}
		return end_number(g, c);
	case S_NUM_E:
		if (c == '+' || c == '-') {
			g->state = S_NUM_ESIGN;
			return true;
		}
		/* fall through */
	case S_NUM_ESIGN:
		if (!is_digit(c))
			return false;
		g->state = S_NUM_EXP;
		return true;
	case S_NUM_EXP:
		if (is_digit(c))
			return true;
		return end_number(g, c);
	case S_LIT: {
		const char *w = literal(g->lit);
		if ((uint8_t)w[g->aux] != c)
			return false;
		if (!w[++g->aux])
			value_done(g);
		return true;
	}
	case S_DONE:
		return is_ws(c);
	}
	return false;
}

bool json_guide_step(json_guide *g, uint8_t c)
{
	json_guide t = *g;
	if (!step(&t, c))
		return false;
	*g = t;
	return true;
}

bool json_guide_feed(json_guide *g, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!step(g, (uint8_t)s[i]))
			return false;
	return true;
}

/* The shortest way out of each state: one byte. */
static uint8_t canonical(const json_guide *g)
{
	switch (g->state) {
	case S_START: return '{';
	case S_OBJ_FIRST: return '}';
	case S_OBJ_KEY: return '"';
	case S_COLON: return ':';
	case S_VALUE: return 'n';
	case S_ARR_FIRST: return ']';
	case S_STR: return '"';
	case S_STR_ESC: return 'n';
	case S_STR_HEX: return '0';
	case S_NUM_MINUS:
	case S_NUM_DOT:
	case S_NUM_E:
	case S_NUM_ESIGN: return '0';
	case S_LIT: return (uint8_t)literal(g->lit)[g->aux];
	default:
		/* after a value, or in a complete number: close the innermost container */
		return g->stack[g->depth - 1] == '{' ? '}' : ']';
	}
}

size_t json_guide_closing(const json_guide *g, char *out)
{
	json_guide t = *g;
	size_t n = 0;
	while (t.state != S_DONE && n < JSON_GUIDE_MAX_CLOSING) {
		uint8_t c = canonical(&t);
		if (!step(&t, c))
			break;                 /* cannot happen: every canonical byte is accepted */
		out[n++] = (char)c;
	}
	return n;
}
