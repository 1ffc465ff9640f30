//! AFL++ target: `common_fuzz::sns` on every input.

fn main() {
    afl::fuzz!(|data: &[u8]| common_fuzz::sns(data));
}
