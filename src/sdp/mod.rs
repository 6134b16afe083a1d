//! SDP bodies. In this release Palisade carries SDP unchanged across the border; the TrGW
//! (media anchoring and rewriting) builds on this module.
