//! Virtualization: what runs guests. So far the vendor-neutral instruction decoding that
//! exit handling needs; the vendor interface (SVM, VMX) comes with the guests issue.
pub mod decode;
pub mod guest_paging;
