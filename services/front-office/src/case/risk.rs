//! Complaint escalation and public-opinion risk: the levels, and the rules that raise the risk
//! flag without a person (words naming a medium or regulator, a customer's repeated
//! complaints, escalation to the top level). Pure.

use super::CaseError;

/// A complaint escalation level: 1 (team lead) to 3 (management, the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EscalationLevel(u8);

impl EscalationLevel {
    pub const TOP: Self = Self(3);

    pub fn parse(field: &'static str, raw: u32) -> Result<Self, CaseError> {
        match u8::try_from(raw) {
            Ok(level @ 1..=3) => Ok(Self(level)),
            _ => Err(CaseError::Invalid {
                field,
                reason: "must be 1, 2 or 3".into(),
            }),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// What raised a public-opinion risk flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskTrigger {
    /// An agent or manager, with their reason.
    Person,
    /// The case's words name a medium or a regulator.
    Keyword,
    /// The customer's complaint count within [`REPEATED_COMPLAINTS_WINDOW_DAYS`] reached
    /// [`REPEATED_COMPLAINTS`].
    RepeatedComplaints,
    /// The complaint reached [`EscalationLevel::TOP`].
    TopEscalation,
}

/// A raised public-opinion risk: what raised it, and why in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Risk {
    pub trigger: RiskTrigger,
    pub detail: String,
}

/// Complaints of one customer (this one included) that flag the case ...
pub const REPEATED_COMPLAINTS: u32 = 3;
/// ... when they fall within this many days.
pub const REPEATED_COMPLAINTS_WINDOW_DAYS: i64 = 30;

/// Words that say a customer may take the case to social media, the press or a regulator,
/// in Chinese and English. Matched case-insensitively after full-width letters and digits
/// are folded to ASCII; a keyword made of ASCII letters or digits matches only where it
/// stands alone ("12315" is not part of "123150"), an English one also with a plural "s"
/// ("reporters"). Words that also appear in ordinary complaints are narrowed to the phrases
/// that threaten: not a bare "315" (a price, a room) but the 3·15 evening and the 12315
/// hotline; not "上网" (going online) but posting online; "媒体" but not "多媒体".
const KEYWORDS: &[&str] = &[
    // Chinese: expose, Weibo, Douyin, media, reporter, Xiaohongshu, the consumer
    // association, the 3·15 consumer-rights evening and the 12315 hotline, posting online.
    "曝光",
    "微博",
    "抖音",
    "媒体",
    "记者",
    "小红书",
    "消协",
    "12315",
    "315晚会",
    "3·15",
    "打315",
    "找315",
    "投诉到315",
    "发到网上",
    "发网上",
    "网上曝光",
    "朋友圈",
    // English.
    "post it online",
    "posting it online",
    "social media",
    "the press",
    "journalist",
    "reporter",
    "go viral",
    "twitter",
    "tiktok",
    "weibo",
    "douyin",
    "consumer association",
];

/// Containing words a keyword is part of without the threat ("多媒体": multimedia).
const NOT_KEYWORDS: &[(&str, &str)] = &[("媒体", "多媒体")];

/// Folds full-width ASCII (U+FF01 to U+FF5E, as Chinese input methods type digits and
/// letters) to ASCII, then lower-cases.
fn normalise(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            other => other,
        })
        .collect::<String>()
        .to_lowercase()
}

/// The first risk keyword in `text`, as listed.
pub fn keyword_in(text: &str) -> Option<&'static str> {
    let normalised = normalise(text);
    KEYWORDS
        .iter()
        .copied()
        .find(|keyword| occurs_alone(&normalised, keyword))
}

/// Whether `keyword` occurs in `text` as a keyword: an ASCII-alphanumeric edge must not
/// touch another ASCII letter or digit (an English word may take a plural "s"), and the
/// occurrence must not be part of a word listed in [`NOT_KEYWORDS`].
fn occurs_alone(text: &str, keyword: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let guard_start = alnum(keyword.chars().next());
    let guard_end = alnum(keyword.chars().next_back());
    let english = keyword.chars().any(|c| c.is_ascii_alphabetic());
    text.match_indices(keyword).any(|(start, found)| {
        let before = text[..start].chars().next_back();
        let mut rest = text[start + found.len()..].chars();
        let mut after = rest.next();
        if english && after == Some('s') {
            after = rest.next();
        }
        let glued_before = guard_start && alnum(before);
        let glued_after = guard_end && alnum(after);
        let inside_another = NOT_KEYWORDS.iter().any(|(part, whole)| {
            *part == keyword && {
                let offset = whole.find(part).unwrap_or(0);
                start >= offset && text[start - offset..].starts_with(whole)
            }
        });
        !(glued_before || glued_after || inside_another)
    })
}

/// The keyword rule over a text a case is made of: `where_found` names it ("the summary").
pub fn keyword_risk(text: &str, where_found: &str) -> Option<Risk> {
    keyword_in(text).map(|keyword| Risk {
        trigger: RiskTrigger::Keyword,
        detail: format!("\"{keyword}\" in {where_found}"),
    })
}

/// The repeated-complaints rule, given how many complaints the customer made within the
/// window before this one.
pub fn repeated_complaints_risk(earlier_complaints: u32) -> Option<Risk> {
    let count = earlier_complaints.saturating_add(1);
    (count >= REPEATED_COMPLAINTS).then(|| Risk {
        trigger: RiskTrigger::RepeatedComplaints,
        detail: format!(
            "complaint {count} from this customer within {REPEATED_COMPLAINTS_WINDOW_DAYS} days"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_found_in_chinese_and_english() {
        assert_eq!(keyword_in("再不修好我就发微博曝光你们"), Some("曝光"));
        assert_eq!(keyword_in("我要打12315"), Some("12315"));
        assert_eq!(
            keyword_in("I will POST IT ONLINE tonight"),
            Some("post it online")
        );
        assert_eq!(
            keyword_in("Going to Social Media with this"),
            Some("social media")
        );
        assert_eq!(keyword_in("315晚会见"), Some("315晚会"));
    }

    #[test]
    fn ordinary_words_are_not_threats_and_variants_are() {
        assert_eq!(keyword_in("花了315元，型号315，room 315"), None);
        assert_eq!(keyword_in("家里不能上网了"), None);
        assert_eq!(keyword_in("多媒体播放器坏了"), None);
        assert_eq!(keyword_in("我要找媒体"), Some("媒体"));
        assert_eq!(keyword_in("多媒体坏了，我要找媒体"), Some("媒体"));
        assert_eq!(keyword_in("等着上3·15晚会吧"), Some("3·15"));
        assert_eq!(
            keyword_in("我打１２３１５投诉"),
            Some("12315"),
            "full-width digits"
        );
        assert_eq!(keyword_in("two reporters called"), Some("reporter"));
        assert_eq!(keyword_in("journalists"), Some("journalist"));
        assert_eq!(keyword_in("reportership"), None);
    }

    #[test]
    fn ascii_keywords_stand_alone() {
        assert_eq!(keyword_in("the part cost 3150 yuan"), None);
        assert_eq!(keyword_in("serial SN123150"), None);
        assert_eq!(keyword_in("I'll go to the press"), Some("the press"));
        assert_eq!(keyword_in("tiktoker"), None);
        assert_eq!(keyword_in("lamp flickers after 2 weeks"), None);
    }

    #[test]
    fn the_third_complaint_in_the_window_is_a_risk() {
        assert_eq!(repeated_complaints_risk(0), None);
        assert_eq!(repeated_complaints_risk(1), None);
        let risk = repeated_complaints_risk(2).expect("third complaint");
        assert_eq!(risk.trigger, RiskTrigger::RepeatedComplaints);
        assert_eq!(risk.detail, "complaint 3 from this customer within 30 days");
    }

    #[test]
    fn escalation_levels_are_one_to_three() {
        assert!(EscalationLevel::parse("level", 0).is_err());
        assert!(EscalationLevel::parse("level", 4).is_err());
        assert!(EscalationLevel::parse("level", 300).is_err());
        assert_eq!(
            EscalationLevel::parse("level", 3).map(EscalationLevel::get),
            Ok(3)
        );
    }
}
