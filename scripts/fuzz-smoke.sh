#!/usr/bin/env bash
# Placeholder until the fuzz targets land: prints why nothing ran.
echo "fuzz-smoke: no fuzz targets yet"
