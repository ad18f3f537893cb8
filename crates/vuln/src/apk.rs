//! Alpine (apk-tools) version order, reimplemented from the rules of apk-tools' `version.c`:
//! `digit{.digit}...{letter}{_suffix{number}}...{~hash}{-rN}`.
//!
//! Components compare left to right: numbers numerically, except that a non-initial number
//! with a leading zero compares as a string (Gentoo rule: `1.01 < 1.1`); a single lowercase
//! letter by byte; suffixes in the order `_alpha < _beta < _pre < _rc < (none) < _cvs < _svn <
//! _git < _hg < _p`; then the commit hash as a string; then the `-rN` revision. When one
//! version runs out first, the longer one is greater unless its next component is a
//! pre-release suffix. apk also orders *invalid* versions (it never refuses to compare), so
//! [`compare`] does the same; [`validate`] says whether apk would accept the version.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tok {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    CommitHash,
    RevisionNo,
    End,
    Invalid,
}

/// Suffix ranks; `NONE` is the pivot between pre-release and post-release suffixes.
const SUFFIX_INVALID: u8 = 0;
const SUFFIX_NONE: u8 = 5;

fn suffix_rank(s: &[u8]) -> u8 {
    match s {
        b"alpha" => 1,
        b"beta" => 2,
        b"pre" => 3,
        b"rc" => 4,
        b"cvs" => 6,
        b"svn" => 7,
        b"git" => 8,
        b"hg" => 9,
        b"p" => 10,
        _ => SUFFIX_INVALID,
    }
}

struct Cursor<'a> {
    rest: &'a [u8],
    token: Tok,
    suffix: u8,
    number: u64,
    value: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn first(s: &'a str) -> Self {
        let mut c = Cursor {
            rest: s.as_bytes(),
            token: Tok::InitialDigit,
            suffix: SUFFIX_INVALID,
            number: 0,
            value: b"",
        };
        c.digits();
        c
    }

    fn span(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let n = self.rest.iter().take_while(|b| pred(**b)).count();
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        taken
    }

    fn digits(&mut self) {
        let d = self.span(|b| b.is_ascii_digit());
        // apk parses into a u64; wrapping keeps absurdly long numbers from panicking.
        self.number = d.iter().fold(0u64, |n, b| {
            n.wrapping_mul(10).wrapping_add(u64::from(b - b'0'))
        });
        self.value = d;
        if d.is_empty() {
            self.token = Tok::Invalid;
        }
    }

    fn next(&mut self) {
        let Some(&c) = self.rest.first() else {
            self.token = Tok::End;
            return;
        };
        match c {
            b'a'..=b'z' => {
                if self.token > Tok::Digit {
                    return self.invalid();
                }
                self.value = &self.rest[..1];
                self.rest = &self.rest[1..];
                self.token = Tok::Letter;
            }
            b'.' | b'0'..=b'9' => {
                if c == b'.' {
                    if self.token > Tok::Digit {
                        return self.invalid();
                    }
                    self.rest = &self.rest[1..];
                }
                self.token = match self.token {
                    Tok::InitialDigit | Tok::Digit => Tok::Digit,
                    Tok::Suffix => Tok::SuffixNo,
                    _ => return self.invalid(),
                };
                self.digits();
            }
            b'_' => {
                if self.token > Tok::SuffixNo {
                    return self.invalid();
                }
                self.rest = &self.rest[1..];
                self.value = self.span(|b| b.is_ascii_lowercase());
                self.suffix = suffix_rank(self.value);
                if self.suffix == SUFFIX_INVALID {
                    return self.invalid();
                }
                self.token = Tok::Suffix;
            }
            b'~' => {
                if self.token >= Tok::CommitHash {
                    return self.invalid();
                }
                self.rest = &self.rest[1..];
                self.value = self.span(|b| b.is_ascii_hexdigit());
                if self.value.is_empty() {
                    return self.invalid();
                }
                self.token = Tok::CommitHash;
            }
            b'-' => {
                if self.token >= Tok::RevisionNo || !self.rest.starts_with(b"-r") {
                    return self.invalid();
                }
                self.rest = &self.rest[2..];
                self.token = Tok::RevisionNo;
                self.digits();
            }
            _ => self.invalid(),
        }
    }

    fn invalid(&mut self) {
        self.token = Tok::Invalid;
    }
}

fn token_cmp(a: &Cursor<'_>, b: &Cursor<'_>) -> Ordering {
    match a.token {
        Tok::Digit if a.value.first() == Some(&b'0') || b.value.first() == Some(&b'0') => {
            a.value.cmp(b.value)
        }
        Tok::Digit | Tok::InitialDigit | Tok::SuffixNo | Tok::RevisionNo => a.number.cmp(&b.number),
        Tok::Letter => a.value.first().cmp(&b.value.first()),
        Tok::Suffix => a.suffix.cmp(&b.suffix),
        _ => a.value.cmp(b.value),
    }
}

/// Orders two apk versions as `apk version -t A B` does (invalid versions included).
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut ta, mut tb) = (Cursor::first(a), Cursor::first(b));
    while ta.token == tb.token && ta.token < Tok::End {
        let r = token_cmp(&ta, &tb);
        if r != Ordering::Equal {
            return r;
        }
        ta.next();
        tb.next();
    }
    if ta.token == tb.token {
        return Ordering::Equal;
    }
    // Equal so far: the longer version is greater unless it continues with a pre-release.
    if ta.token == Tok::Suffix && ta.suffix < SUFFIX_NONE {
        return Ordering::Less;
    }
    if tb.token == Tok::Suffix && tb.suffix < SUFFIX_NONE {
        return Ordering::Greater;
    }
    // Token kinds are ordered so that "ended earlier" (a larger kind) means "smaller version".
    tb.token.cmp(&ta.token)
}

/// Whether apk accepts `v` as a version; `Err` names why not.
pub fn validate(v: &str) -> Result<(), &'static str> {
    if v.is_empty() {
        return Err("empty");
    }
    let mut t = Cursor::first(v);
    while t.token < Tok::End {
        t.next();
    }
    if t.token == Tok::End {
        Ok(())
    } else {
        Err("not of the form digit{.digit}...{letter}{_suffix{N}}...{~hash}{-rN}")
    }
}
