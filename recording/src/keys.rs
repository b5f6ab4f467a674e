//! Master keys: loaded by the server from a key file or the environment, rotated by id (old ids still decrypt).
