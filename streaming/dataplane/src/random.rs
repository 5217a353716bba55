//! Identifiers that need to be unpredictable enough not to collide but are not secrets (request
//! ids, trace ids, multipart boundaries, temporary file names): a per-thread splitmix64 generator
//! seeded from the OS.

thread_local! {
    static RNG: std::cell::Cell<u64> = std::cell::Cell::new(seed());
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: writes at most 8 bytes into `bytes`.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 8, 0) };
    u64::from_ne_bytes(bytes) ^ (std::process::id() as u64) << 32
}

pub fn random_u64() -> u64 {
    RNG.with(|state| {
        // splitmix64
        let mut z = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}
