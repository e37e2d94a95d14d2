# The device wallet's messages, English.
#
# Glossary:
#   buyer, seller   the two wallets of a payment
#   held            value set aside for a payment, not yet spent
#   sync            connecting to the money office
#   money office    the operator's office that settles wallets

wallet-buyer-answered = buyer { $buyer } answered
wallet-price-offered = seller { $seller } asks { $amount }
wallet-received = paid: received { $amount }
wallet-paid = paid: you paid { $amount }
wallet-cancelled = cancelled: no money moved
wallet-awaiting = payment { $transfer }: the seller has gone quiet after you agreed. The amount stays held (not spent) until the seller's phone answers, or the money office decides from the seller's record at a sync; if the seller's phone is blocked, the office cancels the payment at your first sync a day after the block
wallet-refused = payment refused: { $reason }
wallet-charged = charged { $amount }
wallet-unknown-event = something happened that this version of offpay cannot describe
wallet-reason-declined = declined, or not answered in time
wallet-reason-insufficient-funds = not enough value in the wallet
wallet-reason-limit-exceeded = it would break a limit of the wallet (largest payment, or most paid between two syncs); sync first
wallet-reason-unknown-transfer = the wallet does not know this payment
wallet-reason-seller-voided = the seller cancelled it
