# The vending machine's screen and the payer's answers, English.
#
# Glossary:
#   microcheck   the signed payment the payer's device hands the machine (a name, kept)
#   selection    the item chosen at the machine

microcheck-welcome = KeyNote Vending Machine * Make a selection *
microcheck-stock-line = { "  " }[{ $item }] { $product } { $price } ({ $count } left)
microcheck-deposited = deposited: { $text }
microcheck-offline = offline ({ $message }); microcheck { $nonce } kept for later
microcheck-link-closed = link closed: { $message }
microcheck-another = Please make another selection
microcheck-refused = refused: { $refusal }
microcheck-buying = Buying { $product } for { $amount } { $currency } * Point your device *
microcheck-declined-by-payer = declined by the payer
microcheck-dispensing = Dispensing { $product } * Enjoy *
microcheck-paid = paid { $amount } { $currency } for { $product } (microcheck { $nonce })
microcheck-refused-code = refused: { $reason } [{ $code }]
microcheck-declined = declined
