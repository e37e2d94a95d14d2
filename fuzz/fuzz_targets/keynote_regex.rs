//! POSIX regular expressions: compiling and matching never panic; a match is a real,
//! span and every group lies inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offpay_keynote::regex::Regex;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (pattern, subject) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let Ok(regex) = Regex::new(pattern) else {
        return;
    };
    let Ok(Some(captures)) = regex.captures(subject) else {
        return;
    };
    let (start, end) = captures.whole;
    assert!(start <= end && end <= subject.len());
    assert_eq!(captures.groups.len(), regex.group_count());
    for (s, e) in captures.groups.iter().flatten() {
        assert!(start <= *s && s <= e && *e <= end);
    }
});
