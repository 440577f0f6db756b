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
/// in Chinese and English. Matched case-insensitively; a word made of ASCII letters or digits
/// only where it stands alone ("315" is not part of "3150", "news" not of "newsletter").
const KEYWORDS: &[&str] = &[
    // Chinese: expose, Weibo, Douyin, media, reporter, Xiaohongshu, the consumer
    // association, the 3·15 consumer-rights day and its 12315 hotline, the internet, go viral.
    "曝光",
    "微博",
    "抖音",
    "媒体",
    "记者",
    "小红书",
    "消协",
    "315",
    "12315",
    "上网",
    "网上说",
    "发到网上",
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

/// The first risk keyword in `text`, as listed.
pub fn keyword_in(text: &str) -> Option<&'static str> {
    let lowered = text.to_lowercase();
    KEYWORDS
        .iter()
        .copied()
        .find(|keyword| occurs_alone(&lowered, keyword))
}

/// Whether `keyword` occurs in `text`; an ASCII-alphanumeric edge of the keyword must not
/// touch another ASCII letter or digit.
fn occurs_alone(text: &str, keyword: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let guard_start = alnum(keyword.chars().next());
    let guard_end = alnum(keyword.chars().next_back());
    text.match_indices(keyword).any(|(start, found)| {
        let before = text[..start].chars().next_back();
        let after = text[start + found.len()..].chars().next();
        let glued_before = guard_start && alnum(before);
        let glued_after = guard_end && alnum(after);
        !(glued_before || glued_after)
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
        assert_eq!(keyword_in("315晚会"), Some("315"));
    }

    #[test]
    fn ascii_keywords_stand_alone() {
        assert_eq!(keyword_in("the part cost 3150 yuan"), None);
        assert_eq!(keyword_in("serial SN3151"), None);
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
