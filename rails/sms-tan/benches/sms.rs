//! Parse + verify per SMS, the pure part of the server path (target for the whole server path:
//! 5,000 SMS/s). Run: `cargo bench -p offpay-sms-tan --features operator --bench sms`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use offpay_money::{Amount, Currency};
use offpay_sms_tan::civil_time::UnixSeconds;
use offpay_sms_tan::engine::{Inbound, run_to_outcome};
use offpay_sms_tan::recipe::AmountDigits;
use offpay_sms_tan::{
    AccountNumber, AccountView, CurrencyClass, Engine, EngineConfig, Envelope, EnvelopeStatus,
    EnvelopeView, Euin, MasterKey, PayeeContext, PayerContext, PhoneNumber, RowCount, Spending,
    parse, redact_sms,
};

struct Setup {
    engine: Engine,
    payer: PayerContext,
    payee: PayeeContext,
    low: String,
    middle: String,
}

fn setup() -> Setup {
    let master = MasterKey::from_bytes([1; 32]);
    let euin = Euin::parse("26399912345").unwrap();
    let envelope = Envelope::derive(&master, euin, RowCount::Fifty);
    let payer_number = AccountNumber::parse("111100002222").unwrap();
    let payee_number = AccountNumber::parse("901020377865").unwrap();
    let mut view = EnvelopeView::unallocated(euin, RowCount::Fifty);
    view.status = EnvelopeStatus::Active {
        account: payer_number,
    };
    view.binding = Some(master.binding_tag(&euin, &payer_number));
    let kes = |text: &str| Amount::parse(text, Currency::KES).unwrap();
    let payer = PayerContext {
        envelope: view,
        account: AccountView::new(
            payer_number,
            AccountNumber::parse("555566667777").unwrap(),
            Currency::KES,
            CurrencyClass::Soft,
        ),
        balance: kes("1000000"),
        spending: Spending::none(Currency::KES),
    };
    let mut payee_account = AccountView::new(
        payee_number,
        AccountNumber::parse("333344445555").unwrap(),
        Currency::KES,
        CurrencyClass::Soft,
    );
    payee_account.notify_phone = Some(PhoneNumber::parse("+254700000002").unwrap());
    let payee = PayeeContext {
        account: payee_account,
        envelope: None,
        paid_by_payer_today: kes("0"),
    };
    let amount = kes("200000.00");
    let row = envelope.row(1).unwrap();
    let checksum: String = row
        .recipe()
        .checksum(&payee_number, &amount)
        .iter()
        .map(|d| char::from(b'0' + d))
        .collect();
    let low = format!("263 999 12345 * 901020377865 * 200000.00 * 1 * {checksum}");
    let row = envelope.row(2).unwrap();
    let grid = envelope.grid(row.grid_number()).unwrap();
    let mut coded = String::from("90");
    for (index, digit) in payee_number.digits()[2..].iter().enumerate() {
        coded.push_str(&format!(" {:03}", grid.code(*digit, index + 1)));
    }
    let plus = amount.minor() + row.amount_offset_hundredths();
    let sum: String = row
        .recipe()
        .checksum(&payee_number, &amount)
        .iter()
        .map(|d| char::from(b'0' + d))
        .collect();
    let middle = format!(
        "PAYG 26399912345 2 {coded} {}.{:02} {:03} {sum}",
        plus / 100,
        plus % 100,
        grid.magnitude_code(AmountDigits::of(&amount).whole_length()),
    );
    Setup {
        engine: Engine::new(EngineConfig::default(), master).unwrap(),
        payer,
        payee,
        low,
        middle,
    }
}

fn run(setup: &Setup, text: &str) -> bool {
    let inbound = Inbound {
        message_id: "gw-1".to_string(),
        from: PhoneNumber::parse("+254700000001").unwrap(),
        text: text.to_string(),
        received_at: UnixSeconds(1_790_000_000),
    };
    run_to_outcome(
        &setup.engine,
        inbound,
        |_| Some(setup.payer.clone()),
        |_, _| None,
        |_, _| Some(setup.payee.clone()),
        |_| None,
    )
    .is_accepted()
}

fn benches(c: &mut Criterion) {
    let setup = setup();
    assert!(run(&setup, &setup.low), "the low message must verify");
    assert!(run(&setup, &setup.middle), "the middle message must verify");
    let mut group = c.benchmark_group("sms");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_low", |b| b.iter(|| parse(black_box(&setup.low))));
    group.bench_function("parse_middle", |b| {
        b.iter(|| parse(black_box(&setup.middle)))
    });
    group.bench_function("redact_middle", |b| {
        b.iter(|| redact_sms(black_box(&setup.middle)))
    });
    group.bench_function("parse_verify_low", |b| {
        b.iter(|| run(&setup, black_box(&setup.low)))
    });
    group.bench_function("parse_verify_middle", |b| {
        b.iter(|| run(&setup, black_box(&setup.middle)))
    });
    group.bench_function("malformed_reply", |b| {
        b.iter(|| run(&setup, black_box("PAY 26399912345 9010 200")))
    });
    group.finish();
    let master = MasterKey::from_bytes([1; 32]);
    c.bench_function("derive_envelope_50_rows", |b| {
        b.iter(|| {
            Envelope::derive(
                &master,
                black_box(Euin::issued(263, 1).unwrap()),
                RowCount::Fifty,
            )
        })
    });
}

criterion_group!(sms, benches);
criterion_main!(sms);
