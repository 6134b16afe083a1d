//! b2bua
