#!/usr/bin/env bash
# The KeyNote differential run: offpay-keynote against the reference implementation (OpenBSD
# libkeynote and its `keynote` tool), on the corpus in crates/keynote/tests/fixtures.
#
#   bash scripts/keynote-differential.sh SOURCE [WORKDIR]     build the reference, run the corpus
#   bash scripts/keynote-differential.sh --record SOURCE [WORKDIR]
#                                  ... and write the reference's answers into the corpus
#
# SOURCE is a directory holding the reference's sources as OpenBSD ships them in lib/libkeynote
# (keynote.y, keynote.l, keynote-ver.y, keynote-ver.l, signature.c, auxil.c, ..., keynote-main.c
# and the four tool files), which the caller fetches: this repository does not carry them, and
# nothing of them is copied into it. The run recorded in docs/keynote.md used OpenBSD HEAD of
# 2020-03-16 as imported in github.com/zoulasc/libkeynote, commit 5d819d4 (NOT that repository's
# later commit, whose own API port changes behaviour: it compares DSA keys' q against g and
# makes a string of digits read memory before it).
#
# NOT PART OF CI: CI has neither the reference's sources nor network access to fetch them, so the
# corpus test that CI runs (`cargo test -p offpay-keynote --test differential`) compares offpay
# with the answers recorded here; this script is how those answers were obtained and how to check
# them again.
#
# Needs: cc, flex, bison, OpenSSL's headers and libcrypto (1.1 or 3; Debian: libssl-dev flex
# bison). The reference was written against OpenSSL 1.0, which let callers reach into RSA, DSA and
# EVP_PKEY structures; the build below copies SOURCE to WORKDIR/src and rewrites exactly those
# accesses to the accessors of OpenSSL 1.1+ (same values, no change of behaviour), drops the one
# assignment to a field that is gone (DSA's write_params, which DSA_new sets already), supplies
# strlcpy/strlcat (not in older glibc) and the BSD `__unused` attribute. Nothing else is changed.
set -euo pipefail
record=0
if [ "${1:-}" = "--record" ]; then
  record=1
  shift
fi
if [ $# -lt 1 ] || [ ! -f "$1/keynote.y" ]; then
  echo "usage: $0 [--record] SOURCE [WORKDIR]   (SOURCE holds keynote.y, keynote.l, signature.c, ...)" >&2
  exit 2
fi
source_dir=$(cd "$1" && pwd)
work=${2:-$(mktemp -d)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)

rm -rf "$work/src"
mkdir -p "$work/src" "$work/obj"
cp -R "$source_dir/." "$work/src/"
cd "$work/src"

# OpenSSL 1.1+ made RSA, DSA and EVP_PKEY opaque: read the same fields through their accessors.
sed -E -i \
  -e 's/\b(dsa|p1|p2)->(p|q|g|pub_key)\b/DSA_get0_\2(\1)/g' \
  -e 's/\b(rsa|p3|p4)->(n|e)\b/RSA_get0_\2(\1)/g' \
  auxil.c signature.c
sed -E -i \
  -e 's/pPublicKey->pkey\.rsa/(RSA *) EVP_PKEY_get0_RSA(pPublicKey)/' \
  -e '/dsa->write_params = 1;/d' \
  signature.c
if grep -nE -- '->(p|q|g|pub_key|n|e|pkey|write_params)\b' auxil.c signature.c | grep -E 'dsa|rsa|p[1-4]|pPublicKey' >&2; then
  echo "the reference's sources reach into OpenSSL structures in places this script does not know" >&2
  exit 1
fi

cat > "$work/obj/compat.c" <<'EOF'
#include <string.h>
size_t strlcpy(char *dst, const char *src, size_t size) {
    size_t length = strlen(src);
    if (size > 0) {
        size_t n = length >= size ? size - 1 : length;
        memcpy(dst, src, n);
        dst[n] = '\0';
    }
    return length;
}
size_t strlcat(char *dst, const char *src, size_t size) {
    size_t used = strnlen(dst, size);
    if (used == size)
        return size + strlen(src);
    return used + strlcpy(dst + used, src, size - used);
}
EOF

cd "$work/obj"
# The flags of OpenBSD's Makefiles: the library's grammar is prefixed kn, the tool's kv, and both
# lexers are case-insensitive (-i).
bison -d -p kn -b k "$work/src/keynote.y" 2> bison-kn.log
flex -Cr -Pkn -s -i -olex.kn.c "$work/src/keynote.l"
bison -d -p kv -b z "$work/src/keynote-ver.y" 2> bison-kv.log
flex -Cr -Pkv -s -i -olex.kv.c "$work/src/keynote-ver.l"
cflags=(-O1 -w -fcommon -D_GNU_SOURCE '-D__unused=__attribute__((unused))' -I. -I"$work/src")
for file in k.tab.c lex.kn.c z.tab.c lex.kv.c compat.c \
  "$work/src"/{environment,parse_assertion,signature,auxil,base64}.c \
  "$work/src"/keynote-{main,verify,sign,sigver,keygen}.c; do
  cc -c "${cflags[@]}" "$file"
done
# b64_ntop/b64_pton come from glibc's libresolv.
cc -o "$work/keynote" ./*.o -lcrypto -lresolv -lm
echo "reference built: $work/keynote" >&2

# The reference's own regression query must give what its test suite says.
regress="$repo/../shared/keynote/openbsd-regress"
if [ -d "$regress" ]; then
  (cd "$regress" && "$work/keynote" verify -e test-env -r false,maybe,probably,true \
    -k auth1 -k auth2 -k auth3 -k auth4 \
    -l test-assertion1 -l test-assertion2 -l test-assertion3 -l test-assertion4 \
    -l test-assertion5 -l test-assertion6 -l test-assertion7) >&2
fi

cd "$repo"
export OFFPAY_KEYNOTE_REFERENCE="$work/keynote"
if [ "$record" = 1 ]; then
  export OFFPAY_KEYNOTE_RECORD="$repo/crates/keynote/tests/fixtures/differential.txt"
fi
nice -n 10 cargo test -j 1 -p offpay-keynote --test differential -- --ignored --nocapture
