//! Port lists: `80,81,8080-8090`, parsed as LXD's `ParsePortRange` does, plus the bound
//! LXD and Incus never check (1-65535).

/// Parse one list into inclusive ranges.
///
/// # Errors
/// The rule broken: `Invalid port range "…"`, `End port should be higher than start port`,
/// `Port 0 is out of range 1-65535`, or an unparsable number.
pub fn parse_ports(s: &str) -> Result<Vec<(u16, u16)>, String> {
    s.split(',').map(|p| parse_range(p.trim())).collect()
}

fn parse_num(s: &str) -> Result<u16, String> {
    let n: u64 = s.parse().map_err(|_| format!("Invalid port \"{s}\""))?;
    if n == 0 || n > 65535 {
        return Err(format!("Port {n} is out of range 1-65535"));
    }
    Ok(n as u16)
}

fn parse_range(s: &str) -> Result<(u16, u16), String> {
    let parts: Vec<&str> = s.split('-').collect();
    match parts.as_slice() {
        [one] => {
            let p = parse_num(one)?;
            Ok((p, p))
        }
        [a, b] => {
            let (a, b) = (parse_num(a)?, parse_num(b)?);
            if b <= a {
                return Err("End port should be higher than start port".into());
            }
            Ok((a, b))
        }
        _ => Err(format!("Invalid port range \"{s}\"")),
    }
}

/// Every port of the ranges, in order.
pub fn expand(ranges: &[(u16, u16)]) -> Vec<u16> {
    ranges.iter().flat_map(|&(a, b)| a..=b).collect()
}

/// How many ports the ranges hold (without expanding them).
pub fn count(ranges: &[(u16, u16)]) -> usize {
    ranges.iter().map(|&(a, b)| usize::from(b - a) + 1).sum()
}

/// The target ports of a `target_port` field (`""`: none).
pub fn targets(field: &str) -> Vec<u16> {
    if field.is_empty() {
        return Vec::new();
    }
    parse_ports(field).map(|r| expand(&r)).unwrap_or_default()
}

/// The target port of the `i`-th listen port `listen` given `targets`: no target port
/// is the listen port, one is that port, several are taken in order (`None` past
/// their end).
pub fn target_port(targets: &[u16], i: usize, listen: u16) -> Option<u16> {
    match targets.len() {
        0 => Some(listen),
        1 => Some(targets[0]),
        _ => targets.get(i).copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        assert_eq!(
            parse_ports("80,81,8080-8082").unwrap(),
            vec![(80, 80), (81, 81), (8080, 8082)]
        );
        assert_eq!(
            expand(&parse_ports("80, 8080-8082").unwrap()),
            vec![80, 8080, 8081, 8082]
        );
        assert_eq!(count(&parse_ports("1-65535").unwrap()), 65535);
        assert_eq!(
            parse_ports("90-80").unwrap_err(),
            "End port should be higher than start port"
        );
        assert_eq!(
            parse_ports("80-80").unwrap_err(),
            "End port should be higher than start port"
        );
        assert_eq!(
            parse_ports("1-2-3").unwrap_err(),
            "Invalid port range \"1-2-3\""
        );
        assert_eq!(
            parse_ports("0").unwrap_err(),
            "Port 0 is out of range 1-65535"
        );
        assert_eq!(
            parse_ports("99999").unwrap_err(),
            "Port 99999 is out of range 1-65535"
        );
        assert!(parse_ports("").is_err());
        assert!(parse_ports("http").is_err());
    }
}
