//! Dates and times on the command line (`--to-datetime`, `--from-datetime`).

/// Milliseconds since the epoch of `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM|±HHMM]`
/// (UTC when no zone is given) or of a plain number of milliseconds.
pub fn parse_datetime_ms(text: &str) -> Result<i64, String> {
    let invalid =
        || format!("expected YYYY-MM-DDTHH:MM:SS[.sss][Z|+HH:MM] or epoch ms, got '{text}'");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| invalid());
    }
    let number = |s: &str, digits: usize| -> Result<i64, String> {
        if s.len() != digits || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        s.parse().map_err(|_| invalid())
    };
    if !text.is_char_boundary(text.len().min(10)) {
        return Err(invalid());
    }
    let (date, rest) = text.split_at(text.len().min(10));
    let parts: Vec<&str> = date.split('-').collect();
    let [year, month, day] = parts[..] else {
        return Err(invalid());
    };
    let (year, month, day) = (number(year, 4)?, number(month, 2)?, number(day, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(invalid());
    }
    let rest = rest.strip_prefix(['T', ' ']).unwrap_or(rest);
    // The zone starts at Z or at a sign after the time.
    let (time, zone) = match rest.find(['Z', 'z', '+', '-']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let mut millis_of_day = 0;
    if !time.is_empty() {
        let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
        let fields: Vec<&str> = clock.split(':').collect();
        let (hour, minute, second) = match fields[..] {
            [h, m] => (number(h, 2)?, number(m, 2)?, 0),
            [h, m, s] => (number(h, 2)?, number(m, 2)?, number(s, 2)?),
            _ => return Err(invalid()),
        };
        if hour > 23 || minute > 59 || second > 59 {
            return Err(invalid());
        }
        let millis = match fraction.len() {
            0 => 0,
            digits @ 1..=3 => number(fraction, digits)? * 10_i64.pow(3 - digits as u32),
            _ => return Err(invalid()),
        };
        millis_of_day = ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    }
    let offset_minutes = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.is_ascii() {
                return Err(invalid());
            }
            let (hours, minutes) = (number(&digits[..2], 2)?, number(&digits[2..], 2)?);
            if hours > 23 || minutes > 59 {
                return Err(invalid());
            }
            sign * (hours * 60 + minutes)
        }
    };
    let days = days_from_civil(year, month, day);
    Ok(days * 86_400_000 + millis_of_day - offset_minutes * 60_000)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_as_utc_unless_zoned() {
        let check = |text: &str, expected: i64| {
            assert_eq!(parse_datetime_ms(text), Ok(expected), "{text}");
        };
        check("1970-01-01T00:00:00", 0);
        check("1970-01-01", 0);
        check("2024-02-29T12:30:15.250", 1_709_209_815_250);
        check("2024-02-29T12:30:15.25Z", 1_709_209_815_250);
        check("2024-02-29T14:30:15.250+02:00", 1_709_209_815_250);
        check("2024-02-29T07:30:15.250-0500", 1_709_209_815_250);
        check("2024-02-29 12:30", 1_709_209_800_000);
        check("1709209815250", 1_709_209_815_250);
        for bad in [
            "",
            "2023-02-29",
            "2024-13-01",
            "2024-01-01T25:00",
            "yesterday",
            "2024-01-01T10:00+2",
            "2024-01-01T10:00+0é",
            "2024-01-é1",
        ] {
            assert!(parse_datetime_ms(bad).is_err(), "{bad}");
        }
    }
}
