//! Storage engine (see issue 3).
