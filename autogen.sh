#!/bin/sh
# Regenerate configure and Makefile.in from configure.ac and Makefile.am (never committed).
set -e
mkdir -p "$(dirname "$0")/m4"
cd "$(dirname "$0")"
autoreconf -fi
