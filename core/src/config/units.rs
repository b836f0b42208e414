//! Numbers with units in the config: seconds, DVR depths, byte sizes, bitrates.
//!
//! Owns: the spelling of each unit and the exact conversion to an integer. Must not:
//! decide valid ranges (the directive that takes the value does) or know positions.
//!
//! | kind | forms | unit |
//! |---|---|---|
//! | seconds | `2`, `0.5`, `1.25` | to milliseconds, at most 3 decimals |
//! | depth | `3600`, `45s`, `30m`, `12h`, `2d`, `1.5h` | to seconds; suffixes lowercase |
//! | size | `1024`, `512K`, `500M`, `10G`, `1T`, `1.5G` | to bytes; **binary**: `1K` = 1024 bytes, `1M` = 1024², `1G` = 1024³, `1T` = 1024⁴; suffixes uppercase |
//! | bitrate | `3000000`, `800k`, `3M`, `1.5M` | to bits per second; **decimal**: `1k` = 1000, `1M` = 10⁶, `1G` = 10⁹ |
//!
//! Every value must come out as a whole number of its unit (`0.0001` seconds is
//! refused rather than rounded).

/// Why a number did not parse; the caller turns it into a message that names the
/// directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NumError {
    /// Not a number of the expected form.
    Syntax,
    /// A number, but not a whole count of the unit (too many decimals).
    NotWhole,
    /// Too large to hold.
    TooLarge,
}

/// `digits[.digits]` times `scale`, exactly.
fn scaled(s: &str, scale: u64) -> Result<u64, NumError> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (s.contains('.') && frac.is_empty()) {
        return Err(NumError::Syntax);
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    if int.len() > 20 {
        return Err(NumError::TooLarge);
    }
    if frac.len() > 20 {
        return Err(NumError::NotWhole);
    }
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| NumError::TooLarge)?
    };
    let scale = u128::from(scale);
    let mut value = int.checked_mul(scale).ok_or(NumError::TooLarge)?;
    if !frac.is_empty() {
        let f: u128 = frac.parse().map_err(|_| NumError::Syntax)?;
        let den = 10u128.pow(u32::try_from(frac.len()).map_err(|_| NumError::NotWhole)?);
        let num = f.checked_mul(scale).ok_or(NumError::TooLarge)?;
        if (num / den) * den != num {
            return Err(NumError::NotWhole);
        }
        value = value.checked_add(num / den).ok_or(NumError::TooLarge)?;
    }
    u64::try_from(value).map_err(|_| NumError::TooLarge)
}

/// Splits a trailing unit letter off `s` if it is one of `units`.
fn split_suffix(s: &str, units: &[(char, u64)]) -> (String, u64) {
    if let Some(last) = s.chars().last() {
        if let Some((_, m)) = units.iter().find(|(c, _)| *c == last) {
            return (s[..s.len() - last.len_utf8()].to_owned(), *m);
        }
    }
    (s.to_owned(), 1)
}

/// Plain integer, no unit.
pub fn integer(s: &str) -> Result<u64, NumError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NumError::Syntax);
    }
    scaled(s, 1)
}

/// Seconds (`2`, `0.5`) to milliseconds.
pub fn seconds_ms(s: &str) -> Result<u64, NumError> {
    scaled(s, 1000)
}

/// A DVR depth (`2d`, `12h`, `30m`, `45s`, `3600`) to seconds.
pub fn depth_secs(s: &str) -> Result<u64, NumError> {
    const UNITS: [(char, u64); 4] = [('s', 1), ('m', 60), ('h', 3600), ('d', 86_400)];
    let (n, m) = split_suffix(s, &UNITS);
    scaled(&n, m)
}

/// A size (`10G`, `500M`, `1T`, `1024`) to bytes, binary units.
pub fn size_bytes(s: &str) -> Result<u64, NumError> {
    const UNITS: [(char, u64); 4] = [
        ('K', 1 << 10),
        ('M', 1 << 20),
        ('G', 1 << 30),
        ('T', 1 << 40),
    ];
    let (n, m) = split_suffix(s, &UNITS);
    scaled(&n, m)
}

/// A bitrate (`3M`, `800k`, `3000000`) to bits per second, decimal units.
pub fn bitrate_bps(s: &str) -> Result<u64, NumError> {
    const UNITS: [(char, u64); 4] = [
        ('k', 1_000),
        ('K', 1_000),
        ('M', 1_000_000),
        ('G', 1_000_000_000),
    ];
    let (n, m) = split_suffix(s, &UNITS);
    scaled(&n, m)
}

/// Milliseconds as the shortest decimal seconds: 2000 → `2`, 500 → `0.5`.
pub fn format_seconds(ms: u64) -> String {
    let (s, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        s.to_string()
    } else {
        let f = format!("{frac:03}");
        format!("{s}.{}", f.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_units_seconds() {
        assert_eq!(seconds_ms("2"), Ok(2000));
        assert_eq!(seconds_ms("0.5"), Ok(500));
        assert_eq!(seconds_ms("1.250"), Ok(1250));
        assert_eq!(seconds_ms("007.0010000"), Ok(7001));
        assert_eq!(seconds_ms("0.0001"), Err(NumError::NotWhole));
        for bad in ["", ".5", "5.", "1e3", "-1", "2s", "1.2.3", " 1"] {
            assert_eq!(seconds_ms(bad), Err(NumError::Syntax), "{bad}");
        }
        assert_eq!(seconds_ms("99999999999999999999"), Err(NumError::TooLarge));
        assert_eq!(format_seconds(2000), "2");
        assert_eq!(format_seconds(500), "0.5");
        assert_eq!(format_seconds(1250), "1.25");
    }

    #[test]
    fn config_units_depths() {
        assert_eq!(depth_secs("3600"), Ok(3600));
        assert_eq!(depth_secs("45s"), Ok(45));
        assert_eq!(depth_secs("30m"), Ok(1800));
        assert_eq!(depth_secs("12h"), Ok(43_200));
        assert_eq!(depth_secs("2d"), Ok(172_800));
        assert_eq!(depth_secs("1.5h"), Ok(5400));
        assert_eq!(depth_secs("0.5s"), Err(NumError::NotWhole));
        for bad in ["2x", "2D", "30M", "d", "2 d", "h2"] {
            assert_eq!(depth_secs(bad), Err(NumError::Syntax), "{bad}");
        }
    }

    #[test]
    fn config_units_sizes_are_binary() {
        assert_eq!(size_bytes("1024"), Ok(1024));
        assert_eq!(size_bytes("512K"), Ok(512 * 1024));
        assert_eq!(size_bytes("500M"), Ok(500 * 1024 * 1024));
        assert_eq!(size_bytes("10G"), Ok(10 * 1024 * 1024 * 1024));
        assert_eq!(size_bytes("1T"), Ok(1 << 40));
        assert_eq!(size_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(size_bytes("20000000T"), Err(NumError::TooLarge));
        for bad in ["10g", "10GB", "G", "1.5"] {
            assert!(size_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_units_bitrates_are_decimal() {
        assert_eq!(bitrate_bps("3000000"), Ok(3_000_000));
        assert_eq!(bitrate_bps("3M"), Ok(3_000_000));
        assert_eq!(bitrate_bps("800k"), Ok(800_000));
        assert_eq!(bitrate_bps("1.5M"), Ok(1_500_000));
        assert_eq!(bitrate_bps("1G"), Ok(1_000_000_000));
        assert_eq!(bitrate_bps("3m"), Err(NumError::Syntax));
        assert_eq!(integer("12"), Ok(12));
        assert_eq!(integer("1.0"), Err(NumError::Syntax));
    }
}
