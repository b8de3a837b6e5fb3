//! An RFC 7208 SPF evaluator over a [`super::dns::Lookup`].
