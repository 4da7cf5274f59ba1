//! Physical memory: the frame allocator, the direct map and the heap.
pub mod frames;
