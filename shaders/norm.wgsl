// norm kernels (stub)
@compute @workgroup_size(1) fn main() {}
