//! A small, bounded POSIX extended regular expression engine for `~=`.
//!
//! The reference uses the C library's `regcomp(REG_EXTENDED)`/`regexec`: the overall match is
//! the leftmost-longest one, and subexpressions are reported as the C library finds them. The
//! `regex` crate is leftmost-first, which would change both the match and `_1.._n`, so this
//! module implements POSIX matching itself, in two passes that are each linear in
//! (program size x subject length):
//!
//! 1. a Thompson-NFA simulation finds the leftmost-longest overall match `[start, end)`;
//! 2. a backtracking pass with a visited set finds submatches for a path that matches exactly
//!    `[start, end)`, preferring, at every choice, more repetitions and earlier alternatives.
//!
//! Pass 2 gives the POSIX subexpression answer whenever "earlier subexpressions as long as
//! possible" is decided by repetition (the common case: `(.*,)KeyE,.*`, `(a*)(a*)`). It differs
//! from POSIX when, inside a group, an earlier alternative is a shorter prefix of a later one:
//! `(a|ab)(b*)` on `abb` reports `a`,`bb` where POSIX reports `ab`,`b`. docs/keynote.md says so.
//!
//! Bytes are matched as bytes (the C locale); `.` matches any byte, newline included (no
//! `REG_NEWLINE`); `^` and `$` anchor at the ends of the subject only.

use crate::limits::{REGEX_MEMO_BITS_MAX, REGEX_PROGRAM_MAX, REGEX_REPEAT_MAX};

/// Why a regular expression could not be used; for `~=` any of these is a runtime error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegexError {
    /// The pattern is not a valid POSIX extended regular expression.
    Syntax(&'static str),
    /// The pattern or the subject is too large for the bounded engine.
    TooLarge,
}

#[derive(Debug, Clone)]
enum Node {
    Empty,
    Byte(u8),
    Any,
    Class(Box<[bool; 256]>),
    Start,
    End,
    Group(usize, Box<Node>),
    Concat(Vec<Node>),
    Alternate(Vec<Node>),
    Repeat(Box<Node>, u32, Option<u32>),
}

struct Parser<'p> {
    pattern: &'p [u8],
    position: usize,
    groups: usize,
    depth: usize,
}

/// Deepest group nesting accepted; the parser recurses once per group.
const GROUP_DEPTH_MAX: usize = 64;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.pattern.get(self.position).copied()
    }

    fn alternation(&mut self) -> Result<Node, RegexError> {
        let mut branches = vec![self.branch()?];
        while self.peek() == Some(b'|') {
            self.position += 1;
            branches.push(self.branch()?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alternate(branches)
        })
    }

    fn branch(&mut self) -> Result<Node, RegexError> {
        let mut pieces = Vec::new();
        while let Some(byte) = self.peek() {
            if byte == b'|' || byte == b')' {
                break;
            }
            pieces.push(self.piece()?);
        }
        Ok(match pieces.len() {
            0 => Node::Empty,
            1 => pieces.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(pieces),
        })
    }

    fn piece(&mut self) -> Result<Node, RegexError> {
        let mut atom = self.atom()?;
        loop {
            let (min, max) = match self.peek() {
                Some(b'*') => {
                    self.position += 1;
                    (0, None)
                }
                Some(b'+') => {
                    self.position += 1;
                    (1, None)
                }
                Some(b'?') => {
                    self.position += 1;
                    (0, Some(1))
                }
                Some(b'{')
                    if self
                        .pattern
                        .get(self.position + 1)
                        .is_some_and(u8::is_ascii_digit) =>
                {
                    self.position += 1;
                    self.bound()?
                }
                _ => return Ok(atom),
            };
            if matches!(atom, Node::Start | Node::End) {
                return Err(RegexError::Syntax("an anchor cannot be repeated"));
            }
            atom = Node::Repeat(Box::new(atom), min, max);
        }
    }

    fn number(&mut self) -> Result<u32, RegexError> {
        let start = self.position;
        let mut value: u32 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            value = value.saturating_mul(10).saturating_add(u32::from(d - b'0'));
            self.position += 1;
        }
        if self.position == start {
            return Err(RegexError::Syntax("expected a number in `{}`"));
        }
        if value > REGEX_REPEAT_MAX {
            return Err(RegexError::Syntax("repetition count larger than 255"));
        }
        Ok(value)
    }

    fn bound(&mut self) -> Result<(u32, Option<u32>), RegexError> {
        let min = self.number()?;
        let max = if self.peek() == Some(b',') {
            self.position += 1;
            if self.peek() == Some(b'}') {
                None
            } else {
                Some(self.number()?)
            }
        } else {
            Some(min)
        };
        if self.peek() != Some(b'}') {
            return Err(RegexError::Syntax("`{` bound is not closed with `}`"));
        }
        self.position += 1;
        if max.is_some_and(|max| max < min) {
            return Err(RegexError::Syntax("`{m,n}` with n < m"));
        }
        Ok((min, max))
    }

    fn atom(&mut self) -> Result<Node, RegexError> {
        let Some(byte) = self.peek() else {
            return Err(RegexError::Syntax("unexpected end of pattern"));
        };
        self.position += 1;
        Ok(match byte {
            b'(' => {
                self.depth += 1;
                if self.depth > GROUP_DEPTH_MAX {
                    return Err(RegexError::TooLarge);
                }
                self.groups += 1;
                let index = self.groups;
                let inner = self.alternation()?;
                if self.peek() != Some(b')') {
                    return Err(RegexError::Syntax("`(` is not closed with `)`"));
                }
                self.position += 1;
                self.depth -= 1;
                Node::Group(index, Box::new(inner))
            }
            b')' => return Err(RegexError::Syntax("unmatched `)`")),
            b'*' | b'+' | b'?' => return Err(RegexError::Syntax("nothing to repeat")),
            b'{' if self.peek().is_some_and(|b| b.is_ascii_digit()) => {
                return Err(RegexError::Syntax("nothing to repeat"));
            }
            b'.' => Node::Any,
            b'^' => Node::Start,
            b'$' => Node::End,
            b'[' => self.bracket()?,
            b'\\' => {
                let Some(escaped) = self.peek() else {
                    return Err(RegexError::Syntax("trailing backslash"));
                };
                self.position += 1;
                Node::Byte(escaped)
            }
            other => Node::Byte(other),
        })
    }

    fn bracket(&mut self) -> Result<Node, RegexError> {
        let mut set = Box::new([false; 256]);
        let negate = self.peek() == Some(b'^');
        if negate {
            self.position += 1;
        }
        let mut first = true;
        loop {
            let Some(byte) = self.peek() else {
                return Err(RegexError::Syntax("`[` is not closed with `]`"));
            };
            if byte == b']' && !first {
                self.position += 1;
                break;
            }
            first = false;
            let low = self.bracket_element(&mut set)?;
            let Some(low) = low else { continue };
            if self.peek() == Some(b'-') && self.pattern.get(self.position + 1) != Some(&b']') {
                self.position += 1;
                let Some(high) = self.bracket_element(&mut set)? else {
                    return Err(RegexError::Syntax("a range cannot end with a class"));
                };
                if high < low {
                    return Err(RegexError::Syntax("range end before range start"));
                }
                for b in low..=high {
                    set[usize::from(b)] = true;
                }
            } else {
                set[usize::from(low)] = true;
            }
        }
        if negate {
            for slot in set.iter_mut() {
                *slot = !*slot;
            }
        }
        Ok(Node::Class(set))
    }

    /// One bracket element: a byte (returned), or a `[:class:]` (added to `set`, returns None).
    fn bracket_element(&mut self, set: &mut [bool; 256]) -> Result<Option<u8>, RegexError> {
        let Some(byte) = self.peek() else {
            return Err(RegexError::Syntax("`[` is not closed with `]`"));
        };
        self.position += 1;
        if byte != b'[' {
            return Ok(Some(byte));
        }
        let kind = self.peek();
        if !matches!(kind, Some(b':' | b'.' | b'=')) {
            return Ok(Some(b'['));
        }
        let Some(kind) = kind else {
            return Ok(Some(b'['));
        };
        self.position += 1;
        let start = self.position;
        while self.position + 1 < self.pattern.len()
            && !(self.pattern[self.position] == kind && self.pattern[self.position + 1] == b']')
        {
            self.position += 1;
        }
        if self.position + 1 >= self.pattern.len() {
            return Err(RegexError::Syntax("unterminated `[:`, `[.` or `[=`"));
        }
        let name = &self.pattern[start..self.position];
        self.position += 2;
        if kind != b':' {
            return match name {
                [single] => Ok(Some(*single)),
                _ => Err(RegexError::Syntax(
                    "only single-byte collating elements exist",
                )),
            };
        }
        let test: fn(u8) -> bool = match name {
            b"alnum" => |b| b.is_ascii_alphanumeric(),
            b"alpha" => |b| b.is_ascii_alphabetic(),
            b"blank" => |b| b == b' ' || b == b'\t',
            b"cntrl" => |b| b.is_ascii_control(),
            b"digit" => |b| b.is_ascii_digit(),
            b"graph" => |b| b.is_ascii_graphic(),
            b"lower" => |b| b.is_ascii_lowercase(),
            b"print" => |b| b.is_ascii_graphic() || b == b' ',
            b"punct" => |b| b.is_ascii_punctuation(),
            b"space" => crate::text::is_space,
            b"upper" => |b| b.is_ascii_uppercase(),
            b"xdigit" => |b| b.is_ascii_hexdigit(),
            _ => return Err(RegexError::Syntax("unknown character class")),
        };
        for b in 0..=255u8 {
            if test(b) {
                set[usize::from(b)] = true;
            }
        }
        Ok(None)
    }
}

#[derive(Debug, Clone, Copy)]
enum Inst {
    Byte(u8),
    Any,
    Class(usize),
    Start,
    End,
    Split(usize, usize),
    Jump(usize),
    Save(usize),
    Match,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex {
    program: Vec<Inst>,
    classes: Vec<[bool; 256]>,
    groups: usize,
}

/// A successful match: the overall span and one optional span per group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captures {
    /// `[start, end)` of the whole match.
    pub whole: (usize, usize),
    /// Group `k` (1-based) is at index `k - 1`; `None` if it took no part in the match.
    pub groups: Vec<Option<(usize, usize)>>,
}

struct Compiler {
    program: Vec<Inst>,
    classes: Vec<[bool; 256]>,
}

impl Compiler {
    fn push(&mut self, inst: Inst) -> Result<usize, RegexError> {
        if self.program.len() >= REGEX_PROGRAM_MAX {
            return Err(RegexError::TooLarge);
        }
        self.program.push(inst);
        Ok(self.program.len() - 1)
    }

    fn patch_split(&mut self, at: usize, first: usize, second: usize) {
        self.program[at] = Inst::Split(first, second);
    }

    fn compile(&mut self, node: &Node) -> Result<(), RegexError> {
        match node {
            Node::Empty => {}
            Node::Byte(b) => {
                self.push(Inst::Byte(*b))?;
            }
            Node::Any => {
                self.push(Inst::Any)?;
            }
            Node::Class(set) => {
                let index = self.classes.len();
                self.classes.push(**set);
                self.push(Inst::Class(index))?;
            }
            Node::Start => {
                self.push(Inst::Start)?;
            }
            Node::End => {
                self.push(Inst::End)?;
            }
            Node::Group(index, inner) => {
                self.push(Inst::Save(2 * index))?;
                self.compile(inner)?;
                self.push(Inst::Save(2 * index + 1))?;
            }
            Node::Concat(parts) => {
                for part in parts {
                    self.compile(part)?;
                }
            }
            Node::Alternate(branches) => {
                let mut jumps = Vec::new();
                for (index, branch) in branches.iter().enumerate() {
                    if index + 1 < branches.len() {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.compile(branch)?;
                        jumps.push(self.push(Inst::Jump(0))?);
                        let next = self.program.len();
                        self.patch_split(split, split + 1, next);
                    } else {
                        self.compile(branch)?;
                    }
                }
                let end = self.program.len();
                for jump in jumps {
                    self.program[jump] = Inst::Jump(end);
                }
            }
            Node::Repeat(inner, min, max) => {
                for _ in 0..*min {
                    self.compile(inner)?;
                }
                match max {
                    None => {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.compile(inner)?;
                        self.push(Inst::Jump(split))?;
                        let end = self.program.len();
                        self.patch_split(split, split + 1, end);
                    }
                    Some(max) => {
                        let mut splits = Vec::new();
                        for _ in *min..*max {
                            splits.push(self.push(Inst::Split(0, 0))?);
                            self.compile(inner)?;
                        }
                        let end = self.program.len();
                        for split in splits {
                            self.patch_split(split, split + 1, end);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Add `pc` and everything reachable from it without consuming input to `list`, keeping the
/// first (highest-priority, earliest-start) owner of each instruction.
struct ThreadList<'s> {
    list: &'s mut Vec<(usize, usize)>,
    on_list: &'s mut [bool],
    stack: &'s mut Vec<usize>,
}

fn add_thread(
    program: &[Inst],
    threads: ThreadList<'_>,
    pc: usize,
    start: usize,
    at: usize,
    length: usize,
) {
    let ThreadList {
        list,
        on_list,
        stack,
    } = threads;
    stack.push(pc);
    while let Some(pc) = stack.pop() {
        if on_list[pc] {
            continue;
        }
        on_list[pc] = true;
        match program[pc] {
            Inst::Jump(target) => stack.push(target),
            Inst::Split(first, second) => {
                stack.push(second);
                stack.push(first);
            }
            Inst::Save(_) => stack.push(pc + 1),
            Inst::Start => {
                if at == 0 {
                    stack.push(pc + 1);
                }
            }
            Inst::End => {
                if at == length {
                    stack.push(pc + 1);
                }
            }
            _ => list.push((pc, start)),
        }
    }
}

impl Regex {
    /// Compile a POSIX extended regular expression.
    pub fn new(pattern: &[u8]) -> Result<Self, RegexError> {
        let mut parser = Parser {
            pattern,
            position: 0,
            groups: 0,
            depth: 0,
        };
        let node = parser.alternation()?;
        if parser.position != pattern.len() {
            return Err(RegexError::Syntax("unmatched `)`"));
        }
        let mut compiler = Compiler {
            program: Vec::new(),
            classes: Vec::new(),
        };
        compiler.push(Inst::Save(0))?;
        compiler.compile(&node)?;
        compiler.push(Inst::Save(1))?;
        compiler.push(Inst::Match)?;
        Ok(Self {
            program: compiler.program,
            classes: compiler.classes,
            groups: parser.groups,
        })
    }

    /// Number of parenthesised groups in the pattern (`re_nsub`).
    pub fn group_count(&self) -> usize {
        self.groups
    }

    fn step_matches(&self, inst: Inst, byte: u8) -> bool {
        match inst {
            Inst::Byte(b) => b == byte,
            Inst::Any => true,
            Inst::Class(index) => self.classes[index][usize::from(byte)],
            _ => false,
        }
    }

    /// Work units a search of `subject` may cost at most (for the caller's budget).
    pub fn cost_bound(&self, subject: &[u8]) -> u64 {
        let n = u64::try_from(subject.len()).unwrap_or(u64::MAX);
        let m = u64::try_from(self.program.len()).unwrap_or(u64::MAX);
        n.saturating_add(1).saturating_mul(m).saturating_mul(2)
    }

    /// Find the leftmost-longest match and its groups.
    pub fn captures(&self, subject: &[u8]) -> Result<Option<Captures>, RegexError> {
        let Some((start, end)) = self.leftmost_longest(subject) else {
            return Ok(None);
        };
        let groups = if self.groups == 0 {
            Vec::new()
        } else {
            self.submatches(subject, start, end)?
        };
        Ok(Some(Captures {
            whole: (start, end),
            groups,
        }))
    }

    fn leftmost_longest(&self, subject: &[u8]) -> Option<(usize, usize)> {
        let program = &self.program;
        let mut current: Vec<(usize, usize)> = Vec::new();
        let mut next: Vec<(usize, usize)> = Vec::new();
        let mut on_current = vec![false; program.len()];
        let mut on_next = vec![false; program.len()];
        let mut stack = Vec::new();
        let mut best: Option<(usize, usize)> = None;
        for at in 0..=subject.len() {
            if best.is_none() {
                add_thread(
                    program,
                    ThreadList {
                        list: &mut current,
                        on_list: &mut on_current,
                        stack: &mut stack,
                    },
                    0,
                    at,
                    at,
                    subject.len(),
                );
            }
            if current.is_empty() {
                if best.is_some() {
                    break;
                }
                continue;
            }
            for &(pc, start) in &current {
                if let Some((best_start, _)) = best
                    && start > best_start
                {
                    continue;
                }
                match program[pc] {
                    Inst::Match => {
                        let better = match best {
                            None => true,
                            Some((best_start, best_end)) => {
                                start < best_start || (start == best_start && at > best_end)
                            }
                        };
                        if better {
                            best = Some((start, at));
                        }
                    }
                    inst => {
                        if at < subject.len() && self.step_matches(inst, subject[at]) {
                            add_thread(
                                program,
                                ThreadList {
                                    list: &mut next,
                                    on_list: &mut on_next,
                                    stack: &mut stack,
                                },
                                pc + 1,
                                start,
                                at + 1,
                                subject.len(),
                            );
                        }
                    }
                }
            }
            core::mem::swap(&mut current, &mut next);
            core::mem::swap(&mut on_current, &mut on_next);
            next.clear();
            on_next.iter_mut().for_each(|b| *b = false);
        }
        best
    }

    fn submatches(
        &self,
        subject: &[u8],
        start: usize,
        end: usize,
    ) -> Result<Vec<Option<(usize, usize)>>, RegexError> {
        enum Job {
            Explore(usize, usize),
            Restore(usize, Option<usize>),
        }
        let program = &self.program;
        let width = end - start + 1;
        let bits = program.len().saturating_mul(width);
        if bits > REGEX_MEMO_BITS_MAX {
            return Err(RegexError::TooLarge);
        }
        let mut visited = vec![0u64; bits.div_ceil(64)];
        let mut slots: Vec<Option<usize>> = vec![None; 2 * (self.groups + 1)];
        let mut jobs = vec![Job::Explore(0, start)];
        while let Some(job) = jobs.pop() {
            let (mut pc, mut at) = match job {
                Job::Restore(slot, old) => {
                    slots[slot] = old;
                    continue;
                }
                Job::Explore(pc, at) => (pc, at),
            };
            loop {
                let bit = pc * width + (at - start);
                if visited[bit / 64] & (1 << (bit % 64)) != 0 {
                    break;
                }
                visited[bit / 64] |= 1 << (bit % 64);
                match program[pc] {
                    Inst::Match => {
                        if at == end {
                            return Ok((1..=self.groups)
                                .map(|k| match (slots[2 * k], slots[2 * k + 1]) {
                                    (Some(s), Some(e)) => Some((s, e)),
                                    _ => None,
                                })
                                .collect());
                        }
                        break;
                    }
                    Inst::Start => {
                        if at != 0 {
                            break;
                        }
                        pc += 1;
                    }
                    Inst::End => {
                        if at != subject.len() {
                            break;
                        }
                        pc += 1;
                    }
                    Inst::Jump(target) => pc = target,
                    Inst::Split(first, second) => {
                        jobs.push(Job::Explore(second, at));
                        pc = first;
                    }
                    Inst::Save(slot) => {
                        jobs.push(Job::Restore(slot, slots[slot]));
                        slots[slot] = Some(at);
                        pc += 1;
                    }
                    inst => {
                        if at < end && self.step_matches(inst, subject[at]) {
                            pc += 1;
                            at += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
        }
        // Pass 1 proved a path exists; reaching here would mean the passes disagree.
        Err(RegexError::Syntax("internal: submatch pass found no path"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(pattern: &str, subject: &str) -> Option<(String, Vec<Option<String>>)> {
        let re = Regex::new(pattern.as_bytes()).unwrap();
        let caps = re.captures(subject.as_bytes()).unwrap()?;
        let text = |(s, e): (usize, usize)| subject[s..e].to_string();
        Some((
            text(caps.whole),
            caps.groups.into_iter().map(|g| g.map(text)).collect(),
        ))
    }

    #[test]
    fn leftmost_longest_not_leftmost_first() {
        // Leftmost-first would stop at "a"; POSIX takes the longest alternative.
        assert_eq!(groups("a|ab", "abc").unwrap().0, "ab");
        assert_eq!(groups("(a|ab)(c|bcd)", "abcd").unwrap().0, "abcd");
        assert_eq!(groups("x*", "aaa").unwrap().0, "");
        assert_eq!(groups("b+", "abbbc").unwrap().0, "bbb");
    }

    #[test]
    fn reference_regression_pattern() {
        let (whole, g) = groups("(.*,)KeyE,.*", "dsa-hex:00,Key12,KeyE,KeyC").unwrap();
        assert_eq!(whole, "dsa-hex:00,Key12,KeyE,KeyC");
        assert_eq!(g, vec![Some("dsa-hex:00,Key12,".to_string())]);
    }

    #[test]
    fn groups_follow_greedy_priority() {
        assert_eq!(
            groups("(a*)(a*)", "aaa").unwrap().1,
            vec![Some("aaa".into()), Some("".into())]
        );
        assert_eq!(groups("(a|b)*", "abab").unwrap().1, vec![Some("b".into())]);
        assert_eq!(
            groups("(x)|(y)", "y").unwrap().1,
            vec![None, Some("y".into())]
        );
        assert_eq!(
            groups("^([0-9]+)\\.([0-9]{2})$", "12.34").unwrap().1,
            vec![Some("12".into()), Some("34".into())]
        );
    }

    #[test]
    fn brackets_and_classes() {
        assert!(groups("^[[:digit:]]+$", "0123").is_some());
        assert!(groups("^[^a-c]$", "b").is_none());
        assert!(groups("^[]a]$", "]").is_some());
        assert!(groups("^[a-]$", "-").is_some());
        assert!(groups("^a{2,3}$", "aaaa").is_none());
        assert!(groups("^a{2,3}$", "aaa").is_some());
        assert!(groups("^a{2,}$", "aaaaaa").is_some());
    }

    #[test]
    fn bad_patterns_are_errors() {
        for bad in [
            "(",
            ")",
            "*a",
            "a{3,2}",
            "[z-a]",
            "[abc",
            "a\\",
            "[[:nope:]]",
        ] {
            assert!(Regex::new(bad.as_bytes()).is_err(), "{bad}");
        }
        let huge = "a{255}".repeat(20);
        assert_eq!(
            Regex::new(huge.as_bytes()).unwrap_err(),
            RegexError::TooLarge
        );
    }

    #[test]
    fn nested_empty_loops_terminate() {
        assert_eq!(groups("(a*)*b", "aab").unwrap().0, "aab");
        assert_eq!(groups("(|a)+", "aa").unwrap().0, "aa");
    }
}
