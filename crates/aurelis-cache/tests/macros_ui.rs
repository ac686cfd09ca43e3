//! Compile-fail tests of `#[cached]`: every bad attribute is an error that points at it.
//! The expected compiler output is in `tests/ui/*.stderr` (reviewed by hand; regenerate
//! with `TRYBUILD=overwrite` after a deliberate change, then review the diff).

#[test]
fn bad_attributes_are_compile_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
