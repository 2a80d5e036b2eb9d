//! Finding the host of a URL authority in the body, in place: how many
//! host bytes follow (16 at a time with SIMD, with the positions of their
//! dots, so the last two labels are known without another pass), whether
//! user information (`user:password@`) comes first, and the lookup of the
//! host without copying it. `anchor` decides where an authority starts;
//! this module says which host it names.

use super::anchor::Quick;
use super::window::{Stop, Window};
use crate::domains::is_host_byte;
use crate::hostmap::{HostMap, MAX_HOST_LEN};
use crate::simd::{Baseline16, Vector};

/// Longest user information (`user:password@`) in an authority.
pub(super) const MAX_USERINFO: usize = 128;

#[inline]
pub(super) fn is_userinfo_byte(b: u8) -> bool {
    USERINFO_BYTES[usize::from(b)]
}

/// Bytes of user information (RFC 3986 §3.2.1, without the sub-delims
/// that end URLs in markup and scripts: `&;'(),`).
static USERINFO_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'_' | b'~' | b'%' | b'!' | b'$' | b'*' | b'+' | b'=' | b':'
            );
        b += 1;
    }
    t
};

/// Bytes from an authority [`host_at`] needs: two 16-byte host runs and
/// the byte after them. User information running on to the end of the
/// bytes, and hosts of 32 bytes or more without
/// [`PLAIN_REACH`](super::anchor::PLAIN_REACH) - 2 bytes, are asked of the
/// general path.
pub(super) const HOST_REACH: usize = 33;

/// The app host of the authority at `authority`, found in place: hosts of
/// up to 31 bytes (nearly all) in two 16-byte runs with their label
/// positions, looked up without copying ([`HostMap::app_for_host_at`]).
/// User information, trailing dots, longer hosts and anything the bytes of
/// `d` do not settle are [`Quick::Ask`]: an answer never depends on bytes
/// after `d`. `d` must hold [`HOST_REACH`] bytes from `authority`.
#[inline]
pub(super) fn host_at(d: &[u8], authority: usize, host_map: &HostMap) -> Quick {
    debug_assert!(authority + HOST_REACH <= d.len());
    let (mut len, mut dots) = host_run16(&d[authority..authority + 16]);
    if len == 16 {
        let (more, more_dots) = host_run16(&d[authority + 16..authority + 32]);
        if more == 16 {
            return long_host_at(d, authority, host_map);
        }
        len += more;
        dots |= more_dots << 16;
    }
    let end = authority + len;
    let after = d[end];
    if after == b'@' {
        return Quick::Ask;
    }
    if is_userinfo_byte(after) {
        // `host%2F…` or `host:443`: user information only if an `@` ends
        // the run within MAX_USERINFO bytes (as `authority_host` reads it).
        let mut i = end + 1;
        while i < d.len() && i - authority <= MAX_USERINFO && is_userinfo_byte(d[i]) {
            i += 1;
        }
        if i - authority <= MAX_USERINFO && d.get(i).is_none_or(|&b| b == b'@') {
            // User information, or the bytes end before it is known.
            return Quick::Ask;
        }
    }
    if len == 0 || d[authority] == b'.' {
        return Quick::Skip;
    }
    if d[end - 1] == b'.' {
        // Trailing dots are trimmed by the general path.
        return Quick::Ask;
    }
    // The last dot starts the last label; the one before it the last two.
    let (two, one) = match dots {
        0 => (0, 0),
        _ => {
            let last = 31 - dots.leading_zeros() as usize;
            let rest = dots & !(1 << last);
            let two = if rest == 0 {
                0
            } else {
                32 - rest.leading_zeros() as usize
            };
            (two, last + 1)
        }
    };
    match host_map.app_for_host_at(d, authority, end, two, one) {
        Some(_) => Quick::Suffix(end),
        None => Quick::Skip,
    }
}

/// [`host_at`] for a host of 32 bytes or more.
#[cold]
fn long_host_at(data: &[u8], authority: usize, host_map: &HostMap) -> Quick {
    match authority_host_fast(data, authority) {
        None => Quick::Ask,
        Some(host) if host.end == host.start => Quick::Skip,
        Some(host) => {
            match host_map.app_for_host_parts(&data[host.start..host.end], host.two, host.one) {
                Some(_) => Quick::Suffix(host.end),
                None => Quick::Skip,
            }
        }
    }
}

/// A host found by the fast path, with the starts (relative to `start`)
/// of its last two labels and last label.
struct FoundHost {
    start: usize,
    end: usize,
    two: usize,
    one: usize,
}

/// How many of the 16 bytes, from the first, are host bytes, and a mask
/// of the dots among them.
#[inline]
fn host_run16(bytes: &[u8]) -> (usize, u32) {
    let bytes: &[u8; 16] = bytes.try_into().expect("16 bytes");
    // SAFETY: the loads read the 16 bytes of `bytes`; the baseline vector
    // needs no CPU feature beyond the target's own.
    unsafe { host_run::<Baseline16>(bytes) }
}

/// [`host_run16`]'s kernel over any 16-lane vector; [`host_run_scalar`] is
/// its oracle.
///
/// # Safety
/// `V::LANES == 16` and `V`'s feature available.
#[inline(always)]
unsafe fn host_run<V: Vector>(bytes: &[u8; 16]) -> (usize, u32) {
    let v = V::load(bytes.as_ptr());
    let dots = v.eq_byte(b'.');
    let host = v
        .fold_case()
        .in_range(b'a', b'z')
        .or(v.in_range(b'0', b'9'))
        .or(v.eq_byte(b'-').or(dots))
        .or(v.eq_byte(b'_'));
    let run = host.movemask().trailing_ones() as usize;
    let run_mask = (1u32 << run) - 1;
    (run, dots.movemask() & run_mask)
}

/// The definition [`host_run16`] must agree with.
#[cfg(test)]
fn host_run_scalar(bytes: &[u8]) -> (usize, u32) {
    let run = bytes.iter().take_while(|&&b| is_host_byte(b)).count();
    let dots = bytes[..run]
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'.')
        .fold(0u32, |m, (i, _)| m | 1 << i);
    (run, dots)
}

/// The common case of [`authority_host`]: the whole authority lies inside
/// `d` (the window's bytes up to its end) and is a bare host ending in a
/// byte that cannot continue user information. `None`: take the general
/// path.
#[inline]
fn authority_host_fast(d: &[u8], authority: usize) -> Option<FoundHost> {
    let limit = authority + MAX_HOST_LEN + 2;
    if limit >= d.len() {
        return None;
    }
    let mut end = authority;
    // The last two dots seen (absolute positions).
    let (mut dot2, mut dot1) = (None, None);
    // 16 bytes at a time while they fit before `limit` (< `hi`).
    while end + 16 <= limit {
        let (run, dots) = host_run16(&d[end..end + 16]);
        if dots != 0 {
            // The two highest dots of this block (and the last one before
            // it if the block has one dot).
            let high = 31 - dots.leading_zeros() as usize;
            let rest = dots & !(1 << high);
            dot2 = if rest != 0 {
                Some(end + 31 - rest.leading_zeros() as usize)
            } else {
                dot1
            };
            dot1 = Some(end + high);
        }
        end += run;
        if run < 16 {
            break;
        }
    }
    while end < limit && is_host_byte(d[end]) {
        if d[end] == b'.' {
            dot2 = dot1;
            dot1 = Some(end);
        }
        end += 1;
    }
    let after = d[end];
    if end - authority > MAX_HOST_LEN + 1 || is_userinfo_byte(after) || after == b'@' {
        return None;
    }
    let mut host_end = end;
    while host_end > authority && d[host_end - 1] == b'.' {
        host_end -= 1;
    }
    let host = &d[authority..host_end];
    if host.first() == Some(&b'.') {
        return Some(FoundHost {
            start: authority,
            end: authority,
            two: 0,
            one: 0,
        });
    }
    let (two, one) = if host_end == end {
        let rel = |dot: Option<usize>| dot.map_or(0, |p| p + 1 - authority);
        (rel(dot2), rel(dot1))
    } else {
        // Trailing dots were trimmed: find the labels again.
        crate::domains::tails(host)
    };
    Some(FoundHost {
        start: authority,
        end: host_end,
        two,
        one,
    })
}

/// The host of the authority at `authority` (user information skipped),
/// without trailing dots; `None` when there is no usable host.
pub(super) fn authority_host(
    win: &Window<'_>,
    authority: usize,
) -> Result<Option<(usize, usize)>, Stop> {
    // User information, if an `@` ends it.
    let mut host_start = authority;
    let mut i = authority;
    while i - authority <= MAX_USERINFO {
        match win.at(i)? {
            Some(b) if is_userinfo_byte(b) => i += 1,
            Some(b'@') => {
                host_start = i + 1;
                break;
            }
            _ => break,
        }
    }
    let mut end = host_start;
    let after = loop {
        match win.at(end)? {
            Some(b) if is_host_byte(b) => {
                end += 1;
                if end - host_start > MAX_HOST_LEN + 1 {
                    return Ok(None);
                }
            }
            other => break other,
        }
    };
    if after == Some(b'@') {
        return Ok(None);
    }
    // A sentence may end right after a URL: `see https://demo.test.`
    let mut host_end = end;
    while host_end > host_start && win.data[host_end - 1] == b'.' {
        host_end -= 1;
    }
    Ok(Some((host_start, host_end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Bytes16;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn host_runs_agree_with_the_scalar_definition(
            bytes in proptest::array::uniform16(prop_oneof![
                Just(b'a'), Just(b'Z'), Just(b'0'), Just(b'9'), Just(b'.'), Just(b'-'),
                Just(b'_'), Just(b'/'), Just(b'@'), Just(b'`'), Just(b'{'), Just(0xc1_u8),
                Just(b'a' | 0x80), any::<u8>()
            ]),
        ) {
            let want = host_run_scalar(&bytes);
            prop_assert_eq!(host_run16(&bytes), want);
            // SAFETY: 16 bytes; Bytes16 needs no CPU feature.
            prop_assert_eq!(unsafe { host_run::<Bytes16>(&bytes) }, want);
        }
    }
}
