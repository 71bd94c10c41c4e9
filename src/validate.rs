//! Validation: the spec's field rules as NOTES.md reads them, applied to a
//! built survey request before it can be sent.
