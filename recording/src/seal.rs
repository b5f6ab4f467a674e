//! Chunked AES-256-GCM files.
