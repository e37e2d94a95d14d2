# L'écran du distributeur et les réponses au payeur, français.
#
# Glossaire :
#   microcheck   le paiement signé que l'appareil du payeur remet au distributeur (nom conservé)
#   selection    l'article choisi

microcheck-welcome = Distributeur KeyNote * Faites votre choix *
microcheck-stock-line = { "  " }[{ $item }] { $product } { $price } ({ $count } restant(s))
microcheck-deposited = déposé : { $text }
microcheck-offline = hors ligne ({ $message }) ; microcheck { $nonce } gardé pour plus tard
microcheck-link-closed = liaison coupée : { $message }
microcheck-another = Veuillez faire un autre choix
microcheck-refused = refusé : { $refusal }
microcheck-buying = Achat de { $product } pour { $amount } { $currency } * Présentez votre appareil *
microcheck-declined-by-payer = refusé par le payeur
microcheck-dispensing = Distribution de { $product } * Merci *
microcheck-paid = payé { $amount } { $currency } pour { $product } (microcheck { $nonce })
microcheck-refused-code = refusé : { $reason } [{ $code }]
microcheck-declined = refusé
