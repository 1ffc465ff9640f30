//! AFL++ target: `common_fuzz::twilio_form` on every input.

fn main() {
    afl::fuzz!(|data: &[u8]| common_fuzz::twilio_form(data));
}
