//! Rail 4, microchecks: a Provisioning Agent, a payer device with a credential, a vending
//! machine, one real purchase, and the seeds of the wire and deposit targets.

use std::sync::OnceLock;

use offpay_keynote::PrivateKey;
use offpay_microcheck::credential::{self, Classes, PayerTemplate};
use offpay_microcheck::csc::{DepositBody, DepositItem};
use offpay_microcheck::machine::{AwaitingPayment, Machine, MachineConfig, StockItem};
use offpay_microcheck::payer::PayerDevice;
use offpay_microcheck::wire::{Message, WIRE_VERSION};
use offpay_microcheck::{MerchantPolicy, PayerPolicy, Refusal, UnixSeconds};
use offpay_money::{Amount, Currency};

use crate::Seed;

/// The fixture's clock: 2026-01-01 00:00:00 UTC.
pub const NOW: UnixSeconds = UnixSeconds(1_767_225_600);
/// The offer nonce of the fixture's purchase (and of every offer the wire target pays against).
pub const OFFER_NONCE: [u8; 16] = [7; 16];
/// The merchant's id.
pub const MERCHANT: &str = "vm-1";

fn pa() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[1; 32])
}

fn payer_key() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[3; 32])
}

fn merchant_key() -> PrivateKey {
    PrivateKey::ed25519_from_seed(&[4; 32])
}

fn text(assertion: &offpay_keynote::Assertion) -> String {
    String::from_utf8(assertion.text().to_vec()).expect("assertions are text")
}

/// The machine's stock list.
pub fn stock() -> Vec<StockItem> {
    let item = |item: u32, product: &str, class: &str, price: &str| StockItem {
        item,
        product: product.into(),
        product_class: class.into(),
        price: price.into(),
        count: 10,
    };
    vec![
        item(1, "Pocari Sweat", "drink", "0.83"),
        item(2, "Big Sandwich", "food", "4.50"),
        item(3, "Cigars", "adult", "3.00"),
    ]
}

/// The credentials and the purchase the fixture made.
pub struct MicrocheckWorld {
    /// The merchant's credential from the PA.
    pub merchant_credential: String,
    /// The payer's credential from the PA.
    pub payer_credential: String,
    /// The frames of one purchase, in order: select, offer, payment, receipt; then a decline
    /// and a refusal.
    pub frames: Vec<Message>,
    /// The purchase as the machine deposits it.
    pub deposit: DepositItem,
}

/// A vending machine trusting the fixture's PA, with [`stock`].
pub fn machine(world: &MicrocheckWorld) -> Machine {
    let policy = MerchantPolicy::new(MERCHANT, "vend", &pa().principal(), None).expect("policy");
    Machine::new(
        MachineConfig {
            policy,
            currency: Currency::KES,
            key: merchant_key(),
            merchant_credential: world.merchant_credential.clone(),
        },
        stock(),
        [],
    )
    .expect("machine")
}

/// The machine's offer for item 1 at [`NOW`] with [`OFFER_NONCE`].
pub fn offer(machine: &mut Machine) -> AwaitingPayment {
    machine
        .select(1, NOW, &OFFER_NONCE)
        .expect("item 1 is in stock")
}

fn build() -> MicrocheckWorld {
    let pa = pa();
    let merchant_credential = text(
        &credential::issue_merchant(
            &pa,
            &merchant_key().principal(),
            MERCHANT,
            "vend",
            NOW.minus(60),
            NOW.plus(90 * 86_400),
        )
        .expect("merchant credential"),
    );
    let payer_credential = text(
        &credential::issue_payer(
            &pa,
            &payer_key().principal(),
            &PayerTemplate {
                serial: "s1".into(),
                tier: "daily".into(),
                app_domain: "vend".into(),
                currency: Currency::KES,
                amount_max: Amount::parse("5.00", Currency::KES).expect("amount"),
                not_before: NOW.minus(60),
                not_after: NOW.plus(86_400),
                per_merchant_day_max: 20,
                classes: Classes::Any,
            },
        )
        .expect("payer credential"),
    );
    let mut world = MicrocheckWorld {
        merchant_credential,
        payer_credential,
        frames: Vec::new(),
        deposit: DepositItem {
            offer: offpay_microcheck::Offer {
                merchant: String::new(),
                currency: String::new(),
                product: String::new(),
                product_class: String::new(),
                date: String::new(),
                timestamp: String::new(),
                amount: String::new(),
                app_domain: String::new(),
                nonce: String::new(),
            },
            microcheck: String::new(),
            credentials: Vec::new(),
        },
    };
    let mut machine = machine(&world);
    let mut device = PayerDevice::new(
        payer_key(),
        PayerPolicy::new(&pa.principal()).expect("payer policy"),
        std::slice::from_ref(&world.payer_credential),
    )
    .expect("payer device");
    world.frames.push(Message::Select {
        v: WIRE_VERSION,
        item: 1,
    });
    let awaiting = offer(&mut machine);
    let Message::Offer {
        offer,
        merchant_credential,
        offer_signature,
        ..
    } = awaiting.message().clone()
    else {
        panic!("the machine answers a select with an offer");
    };
    world.frames.push(awaiting.message().clone());
    let terms = device
        .check_offer(&offer, &merchant_credential, &offer_signature, NOW)
        .expect("the payer accepts the offer");
    let prepared = device.pay(&terms, 0, NOW, &[]).expect("the payer pays");
    world.frames.push(prepared.message.clone());
    let Message::Payment {
        microcheck,
        credentials,
        ..
    } = prepared.message
    else {
        panic!("the payer answers with a payment");
    };
    let sale = machine
        .pay(awaiting, &microcheck, &credentials)
        .expect("the machine accepts the payment");
    world.deposit = DepositItem::from(&sale.record);
    world.frames.push(machine.complete(sale));
    world.frames.push(Message::Decline {
        v: WIRE_VERSION,
        nonce: offer.nonce.clone(),
    });
    world
        .frames
        .push(Message::refused(&Refusal::malformed("frame", "example")));
    world
}

/// The fixture, built once per process.
pub fn world() -> &'static MicrocheckWorld {
    static WORLD: OnceLock<MicrocheckWorld> = OnceLock::new();
    WORLD.get_or_init(build)
}

/// Seeds of `microcheck_wire`: the first byte is where the target splits the stream; then the
/// frames of a real purchase, each alone and all in a row.
pub fn wire_seeds() -> Vec<Seed> {
    let world = world();
    let mut seeds = Vec::new();
    let mut all = vec![5u8];
    for (index, message) in world.frames.iter().enumerate() {
        let encoded = message.encode();
        all.extend_from_slice(&encoded);
        let mut one = vec![3u8];
        one.extend_from_slice(&encoded);
        seeds.push((format!("frame-{index}"), one));
    }
    seeds.push(("purchase".to_string(), all));
    seeds
}

/// Seeds of `microcheck_deposit`: a real purchase deposited packed (credential table) and inline.
pub fn deposit_seeds() -> Vec<Seed> {
    let world = world();
    let items = vec![world.deposit.clone(), world.deposit.clone()];
    let packed = DepositBody::pack(&items);
    let inline = DepositBody {
        credentials: Vec::new(),
        items: packed
            .items
            .iter()
            .cloned()
            .map(|mut item| {
                item.credentials = std::mem::take(&mut item.credential_refs)
                    .into_iter()
                    .map(|position| packed.credentials[position].clone())
                    .collect();
                item
            })
            .collect(),
    };
    vec![
        (
            "packed".to_string(),
            serde_json::to_vec(&packed).expect("json"),
        ),
        (
            "inline".to_string(),
            serde_json::to_vec(&inline).expect("json"),
        ),
    ]
}
