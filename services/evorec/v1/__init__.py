"""Generated from protos/evorec/v1 by scripts/generate_stubs.py; do not edit."""
