#!/usr/bin/env bash
# Installs libpdfium for `dsocr` PDF input and the PDF tests.
#
# The library is taken from the `pypdfium2` wheel on PyPI, which ships a prebuilt
# `pypdfium2_raw/libpdfium.so`: PyPI is reachable wherever pip works, unlike other
# download sites. Idempotent: does nothing when the library is already installed.
# In the repository it runs `dsocr setup pdfium` (the same download, sha256-checked, in Rust);
# where that cannot run, pip fetches the wheel instead.
#
# Destination: $DSOCR_PDFIUM_DIR, default ~/.cache/deepseek-ocr/pdfium (where dsocr and
# the tests look for it).
set -euo pipefail

dest="${DSOCR_PDFIUM_DIR:-$HOME/.cache/deepseek-ocr/pdfium}"
lib="libpdfium.so"
case "$(uname -s)" in
    Darwin) lib="libpdfium.dylib" ;;
esac

if [ -s "$dest/$lib" ]; then
    echo "libpdfium already installed: $dest/$lib"
    exit 0
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
if command -v cargo >/dev/null && [ -f "$root/Cargo.toml" ]; then
    if (cd "$root" && cargo run --quiet --bin dsocr -- setup pdfium --dir "$dest"); then
        exit 0
    fi
    echo "warning: dsocr setup pdfium failed; trying pip" >&2
fi

py="$(command -v python3 || command -v python || true)"
if [ -z "$py" ]; then
    echo "error: python3 is needed to fetch libpdfium from the pypdfium2 wheel" >&2
    echo "hint: install python3 and pip, or put $lib into $dest by hand" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Only the wheel itself: no dependencies, no build from source.
"$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" pypdfium2

wheel="$(ls "$tmp"/pypdfium2-*.whl 2>/dev/null | head -n 1 || true)"
if [ -z "$wheel" ]; then
    echo "error: pip did not download a pypdfium2 wheel for this platform" >&2
    echo "hint: put $lib into $dest by hand" >&2
    exit 1
fi

mkdir -p "$dest"
# Extract to a temporary name and rename, so a killed install never leaves a truncated library.
"$py" - "$wheel" "$dest" "$lib" <<'EOF'
import os, sys, zipfile
wheel, dest, lib = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith("pypdfium2_raw/" + lib)]
    if not names:
        sys.exit(f"error: {lib} not found in {os.path.basename(wheel)}")
    tmp = os.path.join(dest, lib + ".part")
    with z.open(names[0]) as src, open(tmp, "wb") as out:
        out.write(src.read())
    os.replace(tmp, os.path.join(dest, lib))
EOF

echo "libpdfium installed: $dest/$lib"
