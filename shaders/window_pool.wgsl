// window_pool kernels (stub)
@compute @workgroup_size(1) fn main() {}
