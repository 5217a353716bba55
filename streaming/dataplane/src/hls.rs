//! HTTP caching of media, HLS first: which `Cache-Control` a file is served with.
//!
//! - Playlists (`.m3u8`): `max-age=2`. The master playlist keeps its URL when an asset is
//!   packaged again (`vod-stream package` replaces it last), so caches must come back soon; a
//!   revalidation is a cheap 304 (ETag, Last-Modified).
//! - Files inside a revision folder of a packaged asset (`<prefix>/<hex revision>/...`: init
//!   segments, media segments, poster, storyboard sprite and its WebVTT) never change: a new
//!   packaging writes a new revision folder. So do segment-only formats anywhere (`.m4s`,
//!   `.ts`, `.cmfv`, `.cmfa`): `max-age=31536000, immutable`.
//! - Anything else (a progressive `.mp4` an upload may replace in place): `no-cache`, so
//!   every reuse is revalidated and a replaced file is never served stale.
//!
//! A response to a signed request is `private`: a shared cache (CDN) cannot check tokens, and a
//! `public` copy would outlive the token's expiry and serve whoever asks. A CDN that validates
//! tokens itself can override this at its edge.

/// Suffixes that only ever name media segments (lower case, with the dot).
const SEGMENT_SUFFIXES: [&str; 4] = [".m4s", ".ts", ".cmfv", ".cmfa"];
/// `vod-stream package`'s revision folder names: 8-64 lower-case hex digits.
fn is_revision(segment: &str) -> bool {
    (8..=64).contains(&segment.len())
        && segment.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How long a file may be reused, from its root-relative path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Playlist,
    Immutable,
    Revalidate,
}

pub fn freshness(relative: &str) -> Freshness {
    let lower = relative.to_ascii_lowercase();
    if lower.ends_with(".m3u8") {
        return Freshness::Playlist;
    }
    let mut folders: Vec<&str> = relative.split('/').collect();
    folders.pop(); // the file name
    if SEGMENT_SUFFIXES.iter().any(|s| lower.ends_with(s)) || folders.iter().skip(1).any(|f| is_revision(f)) {
        return Freshness::Immutable;
    }
    Freshness::Revalidate
}

/// The `Cache-Control` value for `relative`, served to a signed (`private`) request or not.
pub fn cache_control(relative: &str, signed: bool) -> &'static str {
    match (freshness(relative), signed) {
        (Freshness::Playlist, false) => "public, max-age=2",
        (Freshness::Playlist, true) => "private, max-age=2",
        (Freshness::Immutable, false) => "public, max-age=31536000, immutable",
        (Freshness::Immutable, true) => "private, max-age=31536000, immutable",
        (Freshness::Revalidate, false) => "public, no-cache",
        (Freshness::Revalidate, true) => "private, no-cache",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder() {
        let rev = "assets/media/intro/0a1b2c3d4e";
        assert_eq!(freshness("assets/media/intro/master.m3u8"), Freshness::Playlist);
        assert_eq!(freshness(&format!("{rev}/720p/index.m3u8")), Freshness::Playlist);
        for file in
            ["720p/init_0.mp4", "720p/seg_00001.m4s", "poster.jpg", "storyboard.jpg", "storyboard.vtt"]
        {
            assert_eq!(freshness(&format!("{rev}/{file}")), Freshness::Immutable, "{file}");
        }
    }

    #[test]
    fn elsewhere() {
        assert_eq!(freshness("movies/a.mp4"), Freshness::Revalidate);
        assert_eq!(freshness("hls/seg1.ts"), Freshness::Immutable);
        assert_eq!(freshness("hls/SEG1.M4S"), Freshness::Immutable);
        // a top-level folder that happens to look like hex is not a revision folder
        assert_eq!(freshness("deadbeef/a.mp4"), Freshness::Revalidate);
        // the file name itself is not a folder
        assert_eq!(freshness("x/deadbeef00"), Freshness::Revalidate);
        assert_eq!(freshness("x/DEADBEEF/a.mp4"), Freshness::Revalidate);
    }

    #[test]
    fn signed_is_private() {
        assert_eq!(cache_control("a/b.m3u8", true), "private, max-age=2");
        assert_eq!(cache_control("a/0a1b2c3d/s.m4s", false), "public, max-age=31536000, immutable");
        assert_eq!(cache_control("a.mp4", true), "private, no-cache");
    }
}
