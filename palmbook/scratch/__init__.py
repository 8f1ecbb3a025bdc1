"""From-scratch teaching versions of what the chapters build, kept in the package so tests cover them."""
