/*
 * SHA-256 against FIPS 180-4 test vectors, in one piece and streamed in every split.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "testutil.h"

static void assert_digest(const void *data, size_t n, const char *hex)
{
	uint8_t d[32];
	char h[65];
	sha256(data, n, d);
	sha256_hex(d, h);
	ck_assert_str_eq(h, hex);
	/* streamed, split at every point, with each implementation */
	for (size_t cut = 0; cut <= n && n < 200; cut++) {
		sha256_ctx c;
		if (cut & 1)
			sha256_init(&c);
		else
			sha256_init_portable(&c);
		sha256_update(&c, data, cut);
		sha256_update(&c, (const char *)data + cut, n - cut);
		sha256_final(&c, d);
		sha256_hex(d, h);
		ck_assert_str_eq(h, hex);
	}
}

START_TEST(test_sha256_fips_vectors)
{
	assert_digest("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_digest("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	assert_digest(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	/* one million 'a' */
	char *m = malloc(1000000);
	memset(m, 'a', 1000000);
	assert_digest(m, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(m);
}
END_TEST

/* The accelerated implementation (where the CPU has one) agrees with the portable one on
 * random data of every length up to a few blocks, fed in random pieces. */
START_TEST(test_sha256_implementations_agree)
{
	uint8_t buf[1000];
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < sizeof(buf); i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
	for (size_t len = 0; len <= sizeof(buf); len += 7) {
		sha256_ctx a, b;
		sha256_init(&a);
		sha256_init_portable(&b);
		size_t off = 0;
		while (off < len) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			size_t k = (size_t)(x % 150);
			if (k > len - off)
				k = len - off;
			sha256_update(&a, buf + off, k);
			sha256_update(&b, buf + off, k);
			off += k;
		}
		uint8_t da[32], db[32];
		sha256_final(&a, da);
		sha256_final(&b, db);
		ck_assert_mem_eq(da, db, 32);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sha256");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_sha256_fips_vectors);
	tcase_add_test(tc, test_sha256_implementations_agree);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
