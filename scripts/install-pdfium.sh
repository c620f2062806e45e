#!/usr/bin/env bash
# Installs libpdfium (placeholder until the PDF work lands).
exit 0
