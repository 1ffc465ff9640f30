//! AFL++ target: `common_fuzz::envelope` on every input.

fn main() {
    afl::fuzz!(|data: &[u8]| common_fuzz::envelope(data));
}
