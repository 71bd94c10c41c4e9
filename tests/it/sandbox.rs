//! The sandbox held to the spec and to each fault, over HTTP and HTTPS.
