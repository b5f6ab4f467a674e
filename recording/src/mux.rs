//! One track: RTP in, WebM/Matroska bytes out.
