//! The vending machine (the merchant payment processor of seed 004 Appendix A), sans I/O.
//!
//! A purchase goes through typed states: [`Machine::select`] turns a button press into an
//! [`AwaitingPayment`] (an offer with a fresh nonce, signed by the merchant key); [`Machine::pay`]
//! runs the offline compliance check and returns an [`AcceptedSale`], whose [`SaleRecord`] the
//! caller must write to stable storage *before* calling [`Machine::complete`], which dispenses
//! (takes the item from stock) and gives the receipt. A machine that crashes between the two
//! keeps the microcheck and has not dispensed: the merchant can be paid, the payer disputes.

use std::collections::{HashMap, HashSet};

use offpay_keynote::{PrivateKey, SignatureCache};
use offpay_money::{Amount, Currency};
use serde::{Deserialize, Serialize};

use crate::auth::{fingerprint, sign_statement};
use crate::compliance::{Payment, check};
use crate::error::{Error, Refusal};
use crate::limits::{NONCE_BYTES, STOCK_ITEMS_MAX};
use crate::microcheck::stated_offer;
use crate::offer::{Offer, OfferTerms, machine_nonce, valid_label, valid_product};
use crate::policy::MerchantPolicy;
use crate::time::UnixSeconds;
use crate::wire::{Message, WIRE_VERSION};

/// Format version of a stored sale.
pub const SALE_RECORD_VERSION: u32 = 1;

/// One line of the stock list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockItem {
    /// Button number.
    pub item: u32,
    /// Product name.
    pub product: String,
    /// Product class (`drink`, `food`, `adult`…).
    pub product_class: String,
    /// Price, decimal.
    pub price: String,
    /// How many are loaded.
    pub count: u32,
}

/// A sale as the machine keeps it and deposits it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleRecord {
    /// [`SALE_RECORD_VERSION`].
    pub v: u32,
    /// The button.
    pub item: u32,
    /// The offer.
    pub offer: Offer,
    /// The payer's microcheck.
    pub microcheck: String,
    /// The credentials presented with it.
    pub credentials: Vec<String>,
}

/// The machine's identity and trust.
#[derive(Debug)]
pub struct MachineConfig {
    /// The merchant's policy (id, domain, PA key, age key).
    pub policy: MerchantPolicy,
    /// Currency of the prices.
    pub currency: Currency,
    /// The merchant key, which signs offers.
    pub key: PrivateKey,
    /// The merchant's credential from the PA, shown to payers.
    pub merchant_credential: String,
}

/// An offer on the screen, waiting for the payer's microcheck.
#[derive(Clone, Debug)]
pub struct AwaitingPayment {
    item: u32,
    terms: OfferTerms,
    message: Message,
}

impl AwaitingPayment {
    /// The offer message to send.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The offer.
    pub fn terms(&self) -> &OfferTerms {
        &self.terms
    }
}

/// A sale that passed the check: persist [`AcceptedSale::record`], then
/// [`Machine::complete`] it.
#[derive(Clone, Debug)]
pub struct AcceptedSale {
    /// What to write to stable storage.
    pub record: SaleRecord,
    payer: String,
}

/// A vending machine.
#[derive(Debug)]
pub struct Machine {
    config: MachineConfig,
    stock: Vec<StockItem>,
    sold: HashSet<String>,
    payer_day: HashMap<(String, String), u32>,
    cache: SignatureCache,
}

impl Machine {
    /// A machine with this stock, after replaying the sales it has kept (they take their items
    /// from stock and count towards the payers' daily purchases).
    pub fn new<'a>(
        config: MachineConfig,
        stock: Vec<StockItem>,
        history: impl IntoIterator<Item = &'a SaleRecord>,
    ) -> Result<Machine, Error> {
        if stock.len() > STOCK_ITEMS_MAX {
            return Err(Error::Usage(format!(
                "at most {STOCK_ITEMS_MAX} stock items"
            )));
        }
        for (index, line) in stock.iter().enumerate() {
            if !valid_product(&line.product) || !valid_label(&line.product_class) {
                return Err(Error::Usage(format!(
                    "stock item {}: bad product name or class",
                    line.item
                )));
            }
            Amount::parse(&line.price, config.currency)
                .map_err(|e| Error::Usage(format!("stock item {}: price: {e}", line.item)))?;
            if stock[..index].iter().any(|other| other.item == line.item) {
                return Err(Error::Usage(format!("stock item {} twice", line.item)));
            }
        }
        let mut machine = Machine {
            config,
            stock,
            sold: HashSet::new(),
            payer_day: HashMap::new(),
            cache: SignatureCache::new(),
        };
        for record in history {
            let payer = Payment::parse(&record.microcheck, &[])
                .map(|p| fingerprint(p.payer()))
                .unwrap_or_default();
            machine.remember(record, &payer);
        }
        Ok(machine)
    }

    fn remember(&mut self, record: &SaleRecord, payer: &str) {
        self.sold.insert(record.offer.nonce.clone());
        *self
            .payer_day
            .entry((payer.to_owned(), record.offer.date.clone()))
            .or_default() += 1;
        if let Some(line) = self.stock.iter_mut().find(|l| l.item == record.item) {
            line.count = line.count.saturating_sub(1);
        }
    }

    /// The stock list as it stands.
    pub fn stock(&self) -> &[StockItem] {
        &self.stock
    }

    /// The merchant id.
    pub fn merchant(&self) -> &str {
        &self.config.policy.merchant
    }

    /// A button press: the offer for `item` at `now`, with a fresh nonce: the time, then the
    /// caller's randomness ([`machine_nonce`]).
    pub fn select(
        &mut self,
        item: u32,
        now: UnixSeconds,
        random: &[u8; NONCE_BYTES],
    ) -> Result<AwaitingPayment, Refusal> {
        let line =
            self.stock
                .iter()
                .find(|l| l.item == item)
                .ok_or_else(|| Refusal::NotForSale {
                    reason: format!("there is no item {item}"),
                })?;
        if line.count == 0 {
            return Err(Refusal::NotForSale {
                reason: format!("{} is sold out", line.product),
            });
        }
        let nonce = machine_nonce(now, random);
        if self.sold.contains(&nonce) {
            return Err(Refusal::NotForSale {
                reason: "nonce reused by the machine's random source".into(),
            });
        }
        let offer = Offer {
            merchant: self.config.policy.merchant.clone(),
            currency: self.config.currency.code().to_owned(),
            product: line.product.clone(),
            product_class: line.product_class.clone(),
            date: now.date(),
            timestamp: now.stamp(),
            amount: line.price.clone(),
            app_domain: self.config.policy.app_domain.clone(),
            nonce,
        };
        let terms = offer.terms()?;
        let offer_signature = sign_statement(&self.config.key, "offer", &offer.signed_bytes())
            .map_err(|e| Refusal::NotForSale {
                reason: format!("the machine cannot sign offers: {e}"),
            })?;
        let message = Message::Offer {
            v: WIRE_VERSION,
            offer,
            merchant_credential: self.config.merchant_credential.clone(),
            offer_signature,
        };
        Ok(AwaitingPayment {
            item,
            terms,
            message,
        })
    }

    /// The payer's answer to an offer: the compliance check, offline.
    pub fn pay(
        &mut self,
        awaiting: AwaitingPayment,
        microcheck: &str,
        credentials: &[String],
    ) -> Result<AcceptedSale, Refusal> {
        let payment = Payment::parse(microcheck, credentials)?;
        let nonce = &awaiting.terms.offer.nonce;
        if let Some(stated) = stated_offer(&payment.microcheck)
            && stated.nonce != *nonce
            && self.sold.contains(&stated.nonce)
        {
            return Err(Refusal::ReplayedNonce {
                nonce: stated.nonce,
            });
        }
        let payer = fingerprint(payment.payer());
        let purchases_today = self
            .payer_day
            .get(&(payer.clone(), awaiting.terms.offer.date.clone()))
            .copied()
            .unwrap_or(0)
            .saturating_add(1);
        check(
            &self.config.policy,
            &awaiting.terms,
            &payment,
            purchases_today,
            &mut self.cache,
        )?;
        Ok(AcceptedSale {
            record: SaleRecord {
                v: SALE_RECORD_VERSION,
                item: awaiting.item,
                offer: awaiting.terms.offer,
                microcheck: microcheck.to_owned(),
                credentials: credentials.to_vec(),
            },
            payer,
        })
    }

    /// Dispenses a sale whose record is on stable storage; returns the receipt.
    pub fn complete(&mut self, sale: AcceptedSale) -> Message {
        self.remember(&sale.record, &sale.payer);
        let offer = sale.record.offer;
        Message::Receipt {
            v: WIRE_VERSION,
            nonce: offer.nonce,
            product: offer.product,
            amount: offer.amount,
            currency: offer.currency,
        }
    }
}
