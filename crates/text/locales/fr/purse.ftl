# Le menu du porte-monnaie (SIM toolkit, 16 caractères par ligne), français.
#
# Glossaire :
#   Code 1     le code de demande du bénéficiaire ; Code 2 : le code de paiement du payeur
#   balance    solde
#   statement  mini-relevé
#   sync       synchroniser (envoyer les opérations à l'opérateur, recevoir les crédits)

purse-title = PORTE-MONNAIE
purse-balance = Solde { $amount }
purse-item-receive = 1 Recevoir
purse-item-send = 2 Envoyer
purse-item-accept = 3 Saisir Code 2
purse-item-show = 4 Dernier Code 2
purse-item-statement = 5 Mini-relevé
purse-item-pending = 6 En attente
purse-item-sync = 7 Synchroniser
purse-item-pin = 8 Changer PIN
purse-item-exit = 0 Quitter
purse-choose = Choix :
purse-last-payment = Dernier paiement
purse-to = à { $who }
purse-from = de { $who }
purse-from-operator = de l'opérateur
purse-to-operator = à l'opérateur
purse-mini-statement = Mini-relevé
purse-no-entries = Aucune opération
purse-pending = En attente
purse-none = Aucune
purse-synced = Synchronisé
purse-sent = { $count } envoyée(s)
purse-credits = { $count } crédit(s)
purse-no-option = Pas d'option { $choice }
purse-error = Erreur
purse-payer-number = N° du payeur :
purse-amount = Montant :
purse-read-to-payer = Lisez au payeur
purse-any-key = Touche : retour
purse-payee-number = N° bénéficiaire:
purse-key-or-number = Touche ou n° :
purse-payees-code-1 = Code 1 bénéf. :
purse-pay-question = Payer { $amount }
purse-to-question = à { $payee } ?
purse-pin = PIN :
purse-paid = Payé
purse-read-to-payee = Lisez au bénéf.
purse-code-1-first = Code 1, 4 chif.:
purse-received = Reçu
purse-old-pin = Ancien PIN :
purse-new-pin = Nouveau PIN :
purse-pin-changed = PIN modifié
purse-forgot-pin = * PIN oublié
purse-reset-code = Code de secours :
purse-pin-reset = PIN réinitialisé
