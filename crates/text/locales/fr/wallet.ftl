# Messages du portefeuille sur appareil, français.
#
# Glossaire :
#   buyer, seller   acheteur, vendeur
#   held            montant réservé pour un paiement, pas encore dépensé
#   sync            synchronisation avec le bureau de l'argent
#   money office    le bureau de l'opérateur qui règle les portefeuilles

wallet-buyer-answered = l'acheteur { $buyer } a répondu
wallet-price-offered = le vendeur { $seller } demande { $amount }
wallet-received = payé : vous avez reçu { $amount }
wallet-paid = payé : vous avez payé { $amount }
wallet-cancelled = annulé : aucun argent n'a bougé
wallet-awaiting = paiement { $transfer } : le vendeur ne répond plus après votre accord. Le montant reste réservé (non dépensé) jusqu'à ce que le téléphone du vendeur réponde, ou que le bureau de l'argent tranche d'après le journal du vendeur lors d'une synchronisation ; si le téléphone du vendeur est bloqué, le bureau annule le paiement à votre première synchronisation un jour après le blocage
wallet-refused = paiement refusé : { $reason }
wallet-charged = débité de { $amount }
wallet-unknown-event = un événement que cette version d'offpay ne sait pas décrire s'est produit
wallet-reason-declined = refusé, ou pas de réponse à temps
wallet-reason-insufficient-funds = pas assez d'argent dans le portefeuille
wallet-reason-limit-exceeded = cela dépasserait un plafond du portefeuille (paiement maximal, ou total entre deux synchronisations) ; synchronisez d'abord
wallet-reason-unknown-transfer = le portefeuille ne connaît pas ce paiement
wallet-reason-seller-voided = le vendeur l'a annulé
