//! Helpers live in the integration tests.
