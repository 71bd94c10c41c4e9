//! `check` on real files: counts, bodies, errors and exit codes.
