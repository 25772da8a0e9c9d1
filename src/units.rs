//! Human-readable quantities: sizes for command output, and sizes and durations people write
//! in settings and flags (`32MiB`, `45m`). Owns nothing else.

/// Decimal units, the way image registries and package indexes show sizes: `310.0 MB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Parses a threshold: `off` (no split), a byte count, or a number with `k`, `M`, `G`
/// (decimal) or `KiB`, `MiB`, `GiB` (binary), e.g. `32MiB`, `100 MB`.
pub fn parse_size_or_off(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size: write e.g. 32MiB, 100MB, or off"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}`; use B, kB, MB, GB, KiB, MiB or GiB, or off"
            ))
        }
    };
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!(
            "`{text}`: the threshold must be at least 1 byte (or off)"
        ));
    }
    Ok(Some(bytes as u64))
}

/// Parses a duration: seconds (`90`, `90s`), minutes (`45m`), hours (`2h`), or a sum of those
/// (`1h30m`). Zero is refused.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("`{text}` is not a duration: write e.g. 5400, 90m, 2h or 1h30m");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match rest[..unit_len].trim() {
            "" | "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = value
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if total == 0 {
        return Err(format!("`{text}`: the duration must be at least 1 second"));
    }
    Ok(std::time::Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("45m"), Ok(Duration::from_secs(2700)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration(" 1h30m "), Ok(Duration::from_secs(5400)));
        for bad in [
            "",
            "0",
            "0m",
            "m",
            "1d",
            "-5",
            "1.5h",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size_or_off("32MiB"), Ok(Some(32 << 20)));
        assert_eq!(parse_size_or_off("100 MB"), Ok(Some(100_000_000)));
        assert_eq!(parse_size_or_off("1"), Ok(Some(1)));
        assert_eq!(parse_size_or_off("off"), Ok(None));
        assert!(parse_size_or_off("0").is_err());
        assert!(parse_size_or_off("12 parsecs").is_err());
        assert!(parse_size_or_off("MB").is_err());
    }

    #[test]
    fn bytes_read_like_a_registry() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(310_000_000), "310.0 MB");
        assert_eq!(human_bytes(4_300_000_000), "4.3 GB");
    }
}
